"""llamaport's recipe for ExecuTorch's recommended XNNPACK setting against ExecuTorch's own export of it.

ExecuTorch's Llama README recommends, for XNNPACK, `-qmode 8da4w --group_size 128 --embedding-quantize 4,32`
(config/llama_xnnpack.yaml). llamaport's `et-xnnpack-8da4w-g128-emb4g32` names the same setting. This script
exports both from the bundled model's weights in one run (export_llama as a subprocess, exactly as
bench/executorch_export_speed.py runs it; ours through llamaport's exporter) and reads, side by side:

- bytes of each .pte (and whether the files are identical), and the kernels each runs outside its delegates (the embedding's op among them);
- logits: every whole 256-token window of the eval text (about 3,580 positions) through both .pte files,
  teacher-forced from position 0; the largest absolute logit difference between them, the share of positions
  whose top-1 agrees, and the KL divergence of ours from the peer's; and each one's statistics against the
  eager full model (bench.bundled_accuracy).

Every width of the bundled model (hidden 128, FFN 384, head 32) is a multiple of 128 and 32, so neither
exporter pads or skips a layer: a difference is the quantization's or the lowering's, not a layer left out.

    .venv/bin/python bench/executorch_recipe_parity.py [--json bench/out/executorch_recipe_parity.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bundled_accuracy import STATISTICS_HEADER, eval_windows, score, statistics_line  # noqa: E402
from bench.executorch_export_speed import export_ours, export_peer, program_summary, work_folder  # noqa: E402
from llamaport.runtime_tests.device.drivers.executorch_runtime import ExecuTorchModel  # noqa: E402

RECIPE = "8da4w-g128-emb4g32"  # the scheme of et-xnnpack-8da4w-g128-emb4g32
CONTEXT = 256


def logits_of(pte: Path, windows: list[list[int]]) -> torch.Tensor:
    model = ExecuTorchModel(pte)
    return torch.cat([torch.from_numpy(np.asarray(model.teacher_forced_logits(w))) for w in windows]).double()


def between(ours: torch.Tensor, peer: torch.Tensor) -> dict:
    """How far our logits are from the peer's, position by position."""
    kld = torch.nn.functional.kl_div(ours.log_softmax(-1), peer.log_softmax(-1), log_target=True,
                                     reduction="none").sum(-1)
    return {"positions": ours.shape[0], "max_abs_logit_difference": float((ours - peer).abs().max()),
            "mean_abs_logit_difference": float((ours - peer).abs().mean()),
            "identical_logits_pct": float((ours == peer).all(-1).double().mean() * 100),
            "same_top1_pct": float((ours.argmax(-1) == peer.argmax(-1)).double().mean() * 100),
            "kld_peer_to_ours_mean": float(kld.mean()), "kld_peer_to_ours_max": float(kld.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("bench/out/executorch_recipe_parity.json"))
    args = parser.parse_args()
    ev = eval_windows(CONTEXT)
    folder = work_folder("llamaport-parity-")
    try:
        (folder / "peer").mkdir()
        peer_pte, peer_s, notes = export_peer(ev.ckpt, folder / "peer", CONTEXT)
        ours_pte, ours_s, _ = export_ours(ev.ckpt, RECIPE, CONTEXT, folder / "ours", ev.calibration)
        result = {"recipe": f"et-xnnpack-{RECIPE}", "peer": "export_llama -qmode 8da4w --group_size 128 "
                  "--embedding-quantize 4,32 -kv --use_sdpa_with_kv_cache -X --xnnpack-extended-ops -d fp32",
                  "bytes": {"peer": peer_pte.stat().st_size, "ours": ours_pte.stat().st_size},
                  "sha256": {"peer": hashlib.sha256(peer_pte.read_bytes()).hexdigest(),
                             "ours": hashlib.sha256(ours_pte.read_bytes()).hexdigest()},
                  "export_s": {"peer": round(peer_s, 1), "ours": round(ours_s, 1)},
                  "programs": {"peer": program_summary(peer_pte), "ours": program_summary(ours_pte)},
                  "peer_notes": notes}
        peer_logits, ours_logits = logits_of(peer_pte, ev.windows), logits_of(ours_pte, ev.windows)
        result["ours_vs_peer"] = between(ours_logits, peer_logits)
        result["vs_full"] = {"peer": score(ev, ExecuTorchModel(peer_pte))[0], "ours": score(ev, ExecuTorchModel(ours_pte))[0]}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    b = result["bytes"]
    print(f"bytes: peer {b['peer']:,}  ours {b['ours']:,}  (ours/peer {b['ours'] / b['peer']:.4f}); "
          f"byte-identical: {result['sha256']['peer'] == result['sha256']['ours']}")
    for who in ("peer", "ours"):
        kernels = result["programs"][who]["kernel_calls"]
        print(f"{who:>5} kernels outside delegates: {kernels}")
    print("ours vs peer: " + ", ".join(f"{k} {v:.4g}" for k, v in result["ours_vs_peer"].items()))
    print(f"{'':>5} {STATISTICS_HEADER}")
    for who in ("peer", "ours"):
        print(f"{who:>5} {statistics_line(result['vs_full'][who])}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
