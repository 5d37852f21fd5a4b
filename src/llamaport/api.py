"""The Python API: what the CLI calls, and what a script or notebook calls the same way.

    import llamaport
    bundle = llamaport.build("path/to/model", recipe="et-xnnpack-8da4w-g32", out="bundle")
    report = llamaport.check("bundle", baseline_model="path/to/model")
    print(report.summary.kld_mean, report.summary.decode_tokens_per_s)

Each function raises llamaport.errors.LlamaportError subclasses (ConfigError, StageError, CheckFailed,
DeviceError) and prints nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from llamaport.errors import CheckFailed, ConfigError


def plan(model=None, recipe: str | None = None, target: str | None = None, out="bundle", max_seq_len: int | None = None,
         eval_text=None, targets_file=None, overwrite: bool = False, calibration_text=None,
         calibration_samples: int | None = None) -> dict:
    """What `build` would do, resolved without reading weights or importing torch (`build --dry-run`)."""
    request = _build_request(model, recipe, target, out, max_seq_len, eval_text, targets_file, overwrite,
                             calibration_text, calibration_samples)
    from llamaport.compile.pipeline import plan_build
    return plan_build(request).plan()


def _build_request(model=None, recipe=None, target=None, out="bundle", max_seq_len=None, eval_text=None,
                   targets_file=None, overwrite=False, calibration_text=None, calibration_samples=None):
    from llamaport.compile.calibration import DUMMY
    from llamaport.compile.pipeline import DEFAULT_MODEL, DEFAULT_TARGET, BuildRequest
    calibration = calibration_text if calibration_text in (None, DUMMY) else Path(calibration_text)
    return BuildRequest(model=Path(model) if model else DEFAULT_MODEL, recipe=recipe, target=target or DEFAULT_TARGET,
                        out=Path(out), max_seq_len=max_seq_len, eval_text=Path(eval_text) if eval_text else None,
                        targets_file=Path(targets_file) if targets_file else None, overwrite=overwrite,
                        calibration_text=calibration, calibration_samples=calibration_samples)


def build(model=None, recipe: str | None = None, target: str | None = None, out="bundle", max_seq_len: int | None = None,
          eval_text=None, targets_file=None, overwrite: bool = False,
          progress: Callable[[str, str, float], None] = lambda *a: None, calibration_text=None,
          calibration_samples: int | None = None):
    """Build a bundle and gate its accuracy; returns the Build (its .manifest is the bundle's contract).
    Static int8 recipes calibrate on `calibration_text` (default: the model folder's calibration.txt)."""
    from llamaport.compile.pipeline import run_build
    return run_build(_build_request(model, recipe, target, out, max_seq_len, eval_text, targets_file, overwrite,
                                    calibration_text, calibration_samples), progress)


PLAN_KEYS = ("model", "recipe", "target", "targets_file", "out", "max_seq_len", "eval_text", "calibration_text",
             "calibration_samples")


def read_plan(path) -> dict:
    """A plan saved from `build --dry-run --json`, as keyword arguments of `build` (Olive's save and replay)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read a build plan ({e}); save one with `llamaport build --dry-run --json`") from e
    if not isinstance(data, dict) or not isinstance(data.get("recipe"), str) or not isinstance(data.get("target"), str):
        raise ConfigError(f"{path}: not a build plan (needs 'recipe' and 'target' ids); save one with "
                          "`llamaport build --dry-run --json`")
    return {k: data.get(k) for k in PLAN_KEYS}


def check(bundle, device: str = "local", baseline_model=None, baseline_bundle=None, gates: dict | None = None,
          decode_tokens: int = 64, warmup: int = 1, repeats: int = 5, progress: Callable[[str], None] = lambda s: None,
          inventory=None):
    """Check a bundle on a device against its golden outputs; returns the Report (gates are not raised:
    see report.passed). `gates` overrides bounds by CLI flag name, e.g. {"max_kld": 0.01}."""
    from llamaport.check_options import check_request, gate_overrides
    from llamaport.runtime_tests.harness import check_bundle
    from llamaport.runtime_tests.latency import LatencyProtocol

    request = check_request(Path(bundle), device, baseline_model, baseline_bundle, gate_overrides(**(gates or {})),
                            LatencyProtocol(decode_tokens=decode_tokens, warmup=warmup, repeats=repeats), inventory)
    return check_bundle(request, progress)


def raise_if_failed(report) -> None:
    if not report.passed:
        raise CheckFailed(f"{report.bundle.path}: misses {len(report.gate_failures)} gate(s) on {report.device.name}",
                          list(report.gate_failures))


def compare(reports: list):
    """Reports (Report objects, report.json files or their folders) side by side: a Comparison."""
    from llamaport.runtime_tests.compare import compare as compare_reports
    from llamaport.runtime_tests.report import Report, read_report
    return compare_reports([r if isinstance(r, Report) else read_report(Path(r)) for r in reports])


def sweep(model=None, target: str | None = None, out="sweep", recipes: tuple[str, ...] = (), max_seq_len=None,
          targets_file=None, overwrite: bool = False, device: str = "local", gates: dict | None = None,
          decode_tokens: int = 64, warmup: int = 1, repeats: int = 5,
          progress: Callable[[str, str], None] = lambda recipe, step: None):
    """Build and check the target's recipes; a SweepResult naming the smallest and fastest passing bundle."""
    from llamaport.check_options import gate_overrides
    from llamaport.compile.pipeline import DEFAULT_MODEL, DEFAULT_TARGET
    from llamaport.runtime_tests.latency import LatencyProtocol
    from llamaport.sweep import SweepRequest, run_sweep

    request = SweepRequest(model=Path(model) if model else DEFAULT_MODEL, target=target or DEFAULT_TARGET, out=Path(out),
                           recipes=tuple(recipes), max_seq_len=max_seq_len,
                           targets_file=Path(targets_file) if targets_file else None, overwrite=overwrite, device=device,
                           gate_overrides=gate_overrides(**(gates or {})),
                           protocol=LatencyProtocol(decode_tokens=decode_tokens, warmup=warmup, repeats=repeats))
    return run_sweep(request, progress)


def tune(model=None, target: str | None = None, out="tune", recipes: tuple[str, ...] = (), max_builds: int = 6,
         max_seq_len=None, targets_file=None, overwrite: bool = False, device: str = "local", decode_tokens: int = 64,
         warmup: int = 1, repeats: int = 5, progress: Callable[[str, str], None] = lambda recipe, step: None):
    """Proxy, prune, build and check recipes for the target; a TuneResult naming the fastest and smallest
    passing bundle, with their build plans and the Pareto plot."""
    from llamaport.compile.pipeline import DEFAULT_MODEL, DEFAULT_TARGET
    from llamaport.runtime_tests.latency import LatencyProtocol
    from llamaport.tune import TuneRequest, run_tune

    request = TuneRequest(model=Path(model) if model else DEFAULT_MODEL, target=target or DEFAULT_TARGET, out=Path(out),
                          recipes=tuple(recipes), max_builds=max_builds, max_seq_len=max_seq_len,
                          targets_file=Path(targets_file) if targets_file else None, overwrite=overwrite, device=device,
                          protocol=LatencyProtocol(decode_tokens=decode_tokens, warmup=warmup, repeats=repeats))
    return run_tune(request, progress)


def generate(bundle, prompt: str, max_new_tokens: int = 64, on_text: Callable[[str], None] = lambda s: None) -> str:
    """Greedy text from any bundle with its own runtime, streamed piece by piece to `on_text`: BOS first and
    stopping at the model's EOS ids, as an app does. Returns the whole text."""
    from llamaport.runtime_tests.bundle_files import verify_bundle
    from llamaport.runtime_tests.generate import generate as run

    if max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, got {max_new_tokens}")
    manifest = verify_bundle(Path(bundle))
    return run(Path(bundle), manifest, prompt, max_new_tokens, on_text)
