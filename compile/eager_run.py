"""The eager full model (transformers, fp32, KV cache) timed on the host with the same protocol and
prompt as a bundle's runners, so speed-ups over the full model are measured, not assumed. It needs the
full model's files, so it runs only where they are (the build host), never on a device.

    python -m llamaport.compile.eager_run MODEL --bundle BUNDLE [--repeats 5 ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from llamaport.runtime_tests.device_run import protocol_args, protocol_of, run_and_emit

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
    def prefill(self, tokens: list[int]) -> torch.Tensor:
        from transformers import DynamicCache

        self.cache = DynamicCache()
        return self.model(torch.tensor([tokens]), past_key_values=self.cache, use_cache=True).logits[0, -1]

    @torch.inference_mode()
    def decode(self, token: int, pos: int) -> torch.Tensor:
        return self.model(torch.tensor([[token]]), past_key_values=self.cache, use_cache=True).logits[0, -1]

    def teacher_forced_logits(self, ids: list[int]) -> torch.Tensor:
        from llamaport.compile.reference import teacher_forced_logits
        return teacher_forced_logits(self.model, ids)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llamaport.compile.eager_run")
    parser.add_argument("model", type=Path)
    parser.add_argument("--bundle", type=Path, required=True, help="bundle whose golden prompt and eval set to use")
    protocol_args(parser)
    args = parser.parse_args(argv)

    def produce() -> dict:
        from llamaport.runtime_tests.accuracy import accuracy_of
        from llamaport.runtime_tests.golden import Golden
        from llamaport.runtime_tests.manifest import GOLDEN_PATH
        from llamaport.runtime_tests.latency import measure

        golden = Golden.load(args.bundle / GOLDEN_PATH)
        model = EagerFullModel(args.model)
        return {"load_s": model.load_s, "latency": measure(model, golden.latency_prompt, protocol_of(args)),
                "accuracy": None if args.no_accuracy else accuracy_of(model, golden)}
    return run_and_emit(RUNNER, produce)


if __name__ == "__main__":
    sys.exit(main())
