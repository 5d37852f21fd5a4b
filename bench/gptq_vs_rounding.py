"""GPTQ against rounding on the bundled model, in one run, for both runtimes: 8da4w at groups 32 and 128,
rounded (each runtime's own rule: torchao's HQQ scales for ExecuTorch, onnxruntime's symmetric blockwise
RTN for onnxruntime-genai) and GPTQ'd on the same grid (quantize.gptq, calibrated on the model's calibration
split, never the eval text). Each artifact is the exporter's real output (.pte through ExecuTorch's runtime,
the genai model.onnx through onnxruntime), scored on every 256-token window of the eval text against the
eager full model (bench.bundled_accuracy: about 3,580 positions), with llama.cpp's standard errors; the
differences that matter are paired by position:

- GPTQ minus rounding at the same group (what GPTQ buys at equal size and speed);
- GPTQ at group 128 minus rounding at group 32 (can the coarser, faster groups keep the finer ones' accuracy).

    .venv/bin/python bench/gptq_vs_rounding.py [--json bench/out/gptq_vs_rounding.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bundled_accuracy import (CONTEXT, STATISTICS_HEADER, eval_windows, fmt, paired_kld_difference,  # noqa: E402
                                    score, statistics_line)

RECIPES = ("8da4w-g32", "8da4w-g32-gptq", "8da4w-g128", "8da4w-g128-gptq")
# (candidate, baseline): the paired differences the table ends with
PAIRS = (("8da4w-g32-gptq", "8da4w-g32"), ("8da4w-g128-gptq", "8da4w-g128"), ("8da4w-g128-gptq", "8da4w-g32"))


def executorch_artifacts(ev, work: Path) -> dict:
    from bench.executorch_export_speed import export_ours
    from llamaport.runtime_tests.device.drivers.executorch_runtime import ExecuTorchModel

    models = {}
    for i, recipe in enumerate(RECIPES):
        pte, _, _ = export_ours(ev.ckpt, recipe, CONTEXT, work / f"et{i}", ev.calibration)
        models[recipe] = (ExecuTorchModel(pte), pte.stat().st_size)
    return models


def onnx_artifacts(ev, work: Path) -> dict:
    from bench.onnx_decode_speed import export_genai
    from llamaport.runtime_tests.device.drivers.onnxruntime_session import OrtModel

    cfg, models = ev.ckpt.config, {}
    for i, recipe in enumerate(RECIPES):
        folder = work / f"ort{i}"
        folder.mkdir()
        files = export_genai(ev.ckpt, recipe, CONTEXT, folder, ev.calibration).files
        model = OrtModel(files[0], cfg["num_key_value_heads"], cfg["head_dim"], CONTEXT)
        models[recipe] = (model, sum(f.stat().st_size for f in files))
    return models


def compare(ev, models: dict) -> dict:
    scores, kld = {}, {}
    for recipe, (model, nbytes) in models.items():
        scores[recipe], kld[recipe] = score(ev, model)
        scores[recipe]["bytes"] = nbytes
    pairs = {}
    for a, b in PAIRS:
        diff, se = paired_kld_difference(kld[a], kld[b])
        pairs[f"{a} - {b}"] = {"kld_difference": diff, "se": se, "kld_ratio": scores[a]["kld_mean"] / scores[b]["kld_mean"]}
    return {"scores": scores, "paired": pairs}


def print_runtime(title: str, result: dict) -> None:
    print(f"\n{title}")
    print(f"{'':18} {'bytes':>10} {STATISTICS_HEADER}")
    for recipe, m in result["scores"].items():
        print(f"{recipe:18} {m['bytes']:>10,} {statistics_line(m)}")
    for name, p in result["paired"].items():
        print(f"  KLD {name}: {p['kld_difference']:+.3e} ± {fmt(p['se'], '.1e')} (paired by position; ratio of means "
              f"{p['kld_ratio']:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("bench/out/gptq_vs_rounding.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    ev = eval_windows()
    work = Path(tempfile.mkdtemp(prefix="llamaport-gptq-bench-"))
    try:
        results = {"executorch (.pte, XNNPACK)": compare(ev, executorch_artifacts(ev, work)),
                   "onnxruntime-genai (model.onnx)": compare(ev, onnx_artifacts(ev, work))}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    positions = next(iter(next(iter(results.values()))["scores"].values()))["positions"]
    print(f"bundled model, {positions} positions ({len(ev.windows)} windows of {CONTEXT}), against the eager full model; "
          f"calibration: {len(ev.calibration)} windows of the calibration split")
    for title, result in results.items():
        print_runtime(title, result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
