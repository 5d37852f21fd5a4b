"""A .pte through ExecuTorch's Python runtime (executorch.runtime): teacher-forced logits, prefill and
decode. ExecuTorch's runtime takes torch tensors (torch is a dependency of the executorch wheel)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..native_logs import native_stderr_quiet


def load_llm_kernels() -> None:
    # The .pte calls ExecuTorch's LLM custom ops (SDPA, KV-cache update) and quantized kernels:
    # importing these registers them with the runtime.
    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401
    import executorch.kernels.quantized  # noqa: F401


class ExecuTorchModel:
    name = "executorch-runtime"

    def __init__(self, pte_path: Path):
        load_llm_kernels()
        from executorch.runtime import Runtime

        start = time.perf_counter()
        with native_stderr_quiet():  # the runtime logs its CPU probing on first load
            self.program = Runtime.get().load_program(str(pte_path))
            self.forward = self.program.load_method("forward")
        self.load_s = time.perf_counter() - start
        self.max_seq_len = self.meta("get_max_seq_len")
        self.max_context_len = self.meta("get_max_context_len")

    def meta(self, name: str):
        return self.program.load_method(name).execute([])[0]

    def _step(self, tokens: list[int], pos: int) -> np.ndarray:
        import torch

        out = self.forward.execute([torch.tensor([tokens], dtype=torch.long), torch.tensor([pos], dtype=torch.long)])
        return out[0].reshape(-1).numpy().copy()  # logits of the last position

    def prefill(self, tokens: list[int]) -> np.ndarray:
        # One call takes at most max_seq_len - 1 tokens (the exported dynamic shape), so chunk.
        chunk, pos, logits = self.max_seq_len - 1, 0, None
        while pos < len(tokens):
            logits = self._step(tokens[pos: pos + chunk], pos)
            pos += chunk
        return logits

    def decode(self, token: int, pos: int) -> np.ndarray:
        if pos >= self.max_context_len:
            raise ValueError(f"position {pos} is past the bundle's context of {self.max_context_len}")
        return self._step([token], pos)

    def teacher_forced_logits(self, ids: list[int]) -> np.ndarray:
        """[len(ids), vocab]: the .pte returns only the last position's logits, so feed one token a step."""
        if len(ids) > self.max_context_len:
            raise ValueError(f"{len(ids)} tokens exceed the bundle's context of {self.max_context_len}")
        return np.stack([self._step([t], i) for i, t in enumerate(ids)])


def load(bundle: Path, job: dict) -> ExecuTorchModel:
    return ExecuTorchModel(Path(bundle) / job["model"])
