"""The eager full model (transformers, fp32, KV cache) timed on the host with the same protocol and
prompt as a bundle's runners, so speed-ups over the full model are measured, not assumed. It needs the
full model's files, so it runs only where they are (the build host), never on a device. It prints the
device runner's own raw result line (llamaport.runtime_tests.device.main), which the host scores the same way.

    python -m llamaport.compile.eager_run MODEL --golden BUNDLE/check/golden.safetensors --out DIR [--repeats 5 ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

RUNNER = "eager-transformers"


class EagerFullModel:
    def __init__(self, model_path: Path):
        from llamaport.compile.reference import full_model
        from llamaport.compile.sources import load_checkpoint

        start = time.perf_counter()
        self.model = full_model(load_checkpoint(model_path))
        self.load_s = time.perf_counter() - start
        self.cache = None

    @torch.inference_mode()
    def prefill(self, tokens: list[int]) -> np.ndarray:
        from transformers import DynamicCache

        self.cache = DynamicCache()
        return self.model(torch.tensor([tokens]), past_key_values=self.cache, use_cache=True).logits[0, -1].numpy()

    @torch.inference_mode()
    def decode(self, token: int, pos: int) -> np.ndarray:
        return self.model(torch.tensor([[token]]), past_key_values=self.cache, use_cache=True).logits[0, -1].numpy()

    def teacher_forced_logits(self, ids: list[int]) -> np.ndarray:
        from llamaport.compile.reference import teacher_forced_logits
        return teacher_forced_logits(self.model, ids).numpy()


def main(argv: list[str] | None = None) -> int:
    from llamaport.runtime_tests.device.golden_file import read_golden_inputs
    from llamaport.runtime_tests.device.main import SCORES, emit, rss_mb
    from llamaport.runtime_tests.device.scores import gather_scores
    from llamaport.runtime_tests.device.timing import greedy, timed_runs

    parser = argparse.ArgumentParser(prog="python -m llamaport.compile.eager_run")
    parser.add_argument("model", type=Path)
    parser.add_argument("--golden", type=Path, required=True, help="the bundle's check/golden.safetensors")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-accuracy", action="store_true")
    args = parser.parse_args(argv)
    try:
        before, golden = rss_mb(), read_golden_inputs(args.golden)
        model = EagerFullModel(args.model)
        result = {"load_s": model.load_s}
        if not args.no_accuracy:
            args.out.mkdir(parents=True, exist_ok=True)
            np.savez(args.out / SCORES, **gather_scores(model.teacher_forced_logits(golden.ids), golden.ids,
                                                        golden.topk_ids, bool(golden.full_references)))
            result.update(scores=SCORES, greedy=[greedy(model, p, golden.greedy_tokens) for p in golden.prompts])
        result.update(runs=timed_runs(model, golden.latency_prompt, args.decode_tokens, args.warmup, args.repeats),
                      prompt_tokens=len(golden.latency_prompt))
    except Exception as e:
        emit({"runner": RUNNER, "error": f"{type(e).__name__}: {e}", "error_kind": "job"})
        return 1
    import resource
    emit({"runner": RUNNER, **result, "rss_before_load_mb": before,
          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
    return 0


if __name__ == "__main__":
    sys.exit(main())
