"""Accuracy on the bundled model for the benchmarks, measured the same way in each: every whole window of
the eval text (256 tokens: about 3,580 positions, 14 times the build's own 255), each read from position 0
by the eager full model and by the artifact alike, scored against the full model with every logit kept (the
KL divergence is exact, not a top-k bound), with llama.cpp's statistics and standard errors
(runtime_tests.metrics). Two artifacts are compared position by position (`paired_kld_difference`), so the
standard error of their difference is that of the difference itself, far below either's own spread."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from llamaport.compile.pipeline import DEFAULT_MODEL

CONTEXT = 256
STATISTICS = ("positions", "kld_mean", "kld_se", "kld_median", "kld_p999", "same_top1_pct", "same_top1_se_pct",
              "ppl_ratio", "ppl_ratio_se")


@dataclass
class EvalWindows:
    ckpt: object  # the bundled model's LlamaCheckpoint
    windows: list[list[int]]
    ids: list[int]  # the windows concatenated: row i of the logits scores ids[i + 1]
    calibration: list[list[int]]  # the model's calibration split (never the eval text), as builds take it
    full: object  # runtime_tests.golden.Reference of the full model, every logit kept


def eval_windows(context: int = CONTEXT) -> EvalWindows:
    from llamaport.compile.calibration import CALIBRATION_SPLIT, DEFAULT_SAMPLES, build_calibration_set
    from llamaport.compile.eval_data import DEFAULT_EVAL_TEXT
    from llamaport.compile.reference import full_model, teacher_forced_logits
    from llamaport.compile.sources import load_checkpoint
    from llamaport.runtime_tests.golden import Reference
    from llamaport.runtime_tests.tokenizer import encode, load_tokenizer

    ckpt = load_checkpoint(DEFAULT_MODEL)
    tok = load_tokenizer(DEFAULT_MODEL / "tokenizer.json")
    text = " ".join(ln.strip() for ln in DEFAULT_EVAL_TEXT.read_text(encoding="utf-8").splitlines() if ln.strip())
    ids = encode(tok, text, bos=True)
    windows = [ids[i: i + context] for i in range(0, len(ids) - context + 1, context)]
    calibration = build_calibration_set(tok, DEFAULT_MODEL / CALIBRATION_SPLIT, DEFAULT_SAMPLES, 64,
                                        ckpt.config["vocab_size"]).windows
    all_ids = [t for w in windows for t in w]
    eager = full_model(ckpt)
    # A window's last row scores the next window's first token, for the full model and every artifact alike.
    with torch.inference_mode():
        full = Reference.from_logits(torch.cat([teacher_forced_logits(eager, w) for w in windows]), all_ids, [],
                                     max_full_bytes=2 ** 40)
    return EvalWindows(ckpt, windows, all_ids, calibration, full)


def score(ev: EvalWindows, model) -> tuple[dict, torch.Tensor]:
    """(the statistics of `model`, any runner with teacher_forced_logits, and its KL divergence per position)."""
    from llamaport.runtime_tests.metrics import compare_to_reference

    logits = torch.cat([torch.from_numpy(np.asarray(model.teacher_forced_logits(w))) for w in ev.windows])
    m = compare_to_reference(ev.full, logits, ev.ids)
    return {k: m[k] for k in STATISTICS}, torch.tensor(m["kld_per_position"], dtype=torch.float64)


def paired_kld_difference(kld: torch.Tensor, baseline: torch.Tensor) -> tuple[float, float | None]:
    """Mean KLD of one artifact minus another's, paired by position, and the standard error of that mean."""
    from llamaport.runtime_tests.metrics import mean_and_se

    return mean_and_se(kld - baseline)


def fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def statistics_line(m: dict) -> str:
    return (f"{m['kld_mean']:>10.3e} ± {fmt(m['kld_se'], '<7.1e')} {m['kld_median']:>9.2e} {m['kld_p999']:>9.2e}"
            f" {m['same_top1_pct']:>6.1f} ± {fmt(m['same_top1_se_pct'], '<5.1f')}"
            f" {m['ppl_ratio']:>7.4f} ± {fmt(m['ppl_ratio_se'], '<7.4f')}")


STATISTICS_HEADER = f"{'KLD mean':>20} {'median':>9} {'p99.9':>9} {'same-top-1 %':>14} {'ppl ratio':>17}"
