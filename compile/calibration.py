"""Calibration text for static (calibrated) int8 graphs: the windows a backend's quantizer measures
activation ranges on. Text the user gives, else the model folder's own calibration split
(`calibration.txt`, as the bundled model has: training stories, never eval text). Never the eval text,
and never a dummy input unless asked for by name (only to measure what calibration is worth)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from llamaport.errors import ConfigError
from llamaport.runtime_tests.manifest import Calibration

CALIBRATION_SPLIT = "calibration.txt"  # beside a model folder's weights
DEFAULT_SAMPLES = 16
DUMMY = "dummy"


@dataclass(frozen=True)
class CalibrationSet:
    windows: list[list[int]]  # each one fixed-length forward
    info: Calibration


def calibration_path(model: Path, given: Path | str | None, eval_text: Path) -> Path | str:
    """The calibration text to use (or DUMMY), refused in one line when there is none or it is the eval text."""
    if given == DUMMY:
        return DUMMY
    if given is None:
        split = Path(model) / CALIBRATION_SPLIT
        if not split.is_file():
            raise ConfigError(f"{model}: calibrated recipes (static int8, -gptq, -keep8xN) need calibration text and the model folder has no "
                              f"{CALIBRATION_SPLIT}; pass --calibration-text with text like the model's training data "
                              "(not the eval text)")
        given = split
    path = Path(given)
    if not path.is_file():
        raise ConfigError(f"--calibration-text {path}: no such file")
    if _same_text(path, eval_text):
        raise ConfigError(f"--calibration-text {path}: is the eval text; calibrating on it would hide the quantization "
                          "error the check measures: give other text")
    return path


def _same_text(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b) or a.read_bytes() == Path(b).read_bytes()
    except OSError:
        return False


def build_calibration_set(tok, source: Path | str, samples: int, window: int, vocab_size: int) -> CalibrationSet:
    """`samples` windows of `window` tokens from the text (BOS first, as the model reads text), or one
    dummy window as ExecuTorch's export_llama calibrates when given no data."""
    from llamaport.runtime_tests.tokenizer import encode

    if samples < 1:
        raise ConfigError(f"--calibration-samples must be at least 1, got {samples}")
    if source == DUMMY:
        # What export_llama calibrates a fixed-length program on when given no data: its example input,
        # arange(T) % (vocab - 1) + 1 (executorch 1.5.1, Llama2Model.get_example_inputs). Kept only to
        # measure what real calibration text is worth.
        dummy = [i % (vocab_size - 1) + 1 for i in range(window)]
        return CalibrationSet([dummy], Calibration(source=DUMMY, samples=1, tokens_per_sample=window))
    path = Path(source)
    try:
        text = " ".join(ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip())
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read calibration text ({e})") from e
    ids = encode(tok, text, bos=True)
    windows = [ids[i: i + window] for i in range(0, len(ids) - window + 1, window)][:samples]
    if len(windows) < samples:
        raise ConfigError(f"{path}: calibration text gives {len(windows)} windows of {window} tokens; "
                          f"{samples} wanted: give more text or fewer --calibration-samples")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return CalibrationSet(windows, Calibration(source=str(path), samples=len(windows), tokens_per_sample=window,
                                               text_sha256=digest))
