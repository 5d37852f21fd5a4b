"""Run a bundle's .pte with ExecuTorch's Python runtime: teacher-forced logits and greedy decoding,
from the bundle alone (no full model, no llamaport build code)."""

from __future__ import annotations

import time
from pathlib import Path

import torch


def _load_llm_kernels() -> None:
    # The .pte calls ExecuTorch's LLM custom ops (SDPA, KV-cache update) and quantized kernels:
    # importing these registers them with the runtime.
    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401
    import executorch.kernels.quantized  # noqa: F401


class ExecuTorchModel:
    def __init__(self, pte_path: Path):
        _load_llm_kernels()
        from executorch.runtime import Runtime

        start = time.perf_counter()
        self.program = Runtime.get().load_program(str(pte_path))
        self.forward = self.program.load_method("forward")
        self.load_seconds = time.perf_counter() - start
        self.max_seq_len = self._meta("get_max_seq_len")
        self.max_context_len = self._meta("get_max_context_len")

    def _meta(self, name: str):
        return self.program.load_method(name).execute([])[0]

    def _step(self, tokens: list[int], pos: int) -> torch.Tensor:
        out = self.forward.execute([torch.tensor([tokens], dtype=torch.long), torch.tensor([pos], dtype=torch.long)])
        return out[0].reshape(-1)  # logits of the last position

    def _prefill(self, tokens: list[int]) -> torch.Tensor:
        # One call takes at most max_seq_len - 1 tokens (the exported dynamic shape), so chunk.
        chunk, pos, logits = self.max_seq_len - 1, 0, None
        while pos < len(tokens):
            logits = self._step(tokens[pos: pos + chunk], pos)
            pos += chunk
        return logits

    def teacher_forced_logits(self, ids: list[int]) -> torch.Tensor:
        """[len(ids), vocab]: the .pte returns only the last position's logits, so feed one token a step."""
        if len(ids) > self.max_context_len:
            raise ValueError(f"{len(ids)} tokens exceed the bundle's context of {self.max_context_len}")
        return torch.stack([self._step([t], i).clone() for i, t in enumerate(ids)])

    def greedy(self, prompt: list[int], new_tokens: int) -> tuple[list[int], dict]:
        if len(prompt) + new_tokens > self.max_context_len:
            raise ValueError(f"prompt {len(prompt)} + {new_tokens} tokens exceed the context of {self.max_context_len}")
        start = time.perf_counter()
        logits = self._prefill(prompt)
        first = time.perf_counter()
        tokens = [int(logits.argmax())]
        for i in range(new_tokens - 1):
            tokens.append(int(self._step([tokens[-1]], len(prompt) + i).argmax()))
        end = time.perf_counter()
        stats = {"prefill_s": first - start, "decode_s": end - first,
                 "decode_tokens_per_s": (new_tokens - 1) / (end - first) if new_tokens > 1 else None}
        return tokens, stats
