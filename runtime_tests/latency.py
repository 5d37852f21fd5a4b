"""Latency the way the field measures it: a stated prompt, warm-up runs, several repeats, medians and
spread. Time to first token = prefill + choosing the first token; decode tokens/s over the tokens after it."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


class StepRunner(Protocol):
    """A runtime that can prefill a prompt (from position 0, replacing any earlier state) and decode."""

    def prefill(self, tokens: list[int]) -> torch.Tensor: ...  # logits of the last prompt position

    def decode(self, token: int, pos: int) -> torch.Tensor: ...


@dataclass(frozen=True)
class LatencyProtocol:
    decode_tokens: int = 64
    warmup: int = 1
    repeats: int = 5

    def to_dict(self) -> dict:
        return asdict(self)


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": list(values)}


def greedy(runner: StepRunner, prompt: list[int], new_tokens: int) -> list[int]:
    """Exactly `new_tokens` argmax tokens (EOS does not stop it, so runs compare at equal length)."""
    tokens = [int(runner.prefill(prompt).argmax())]
    for i in range(new_tokens - 1):
        tokens.append(int(runner.decode(tokens[-1], len(prompt) + i).argmax()))
    return tokens


def _one_run(runner: StepRunner, prompt: list[int], decode_tokens: int) -> dict:
    start = time.perf_counter()
    token = int(runner.prefill(prompt).argmax())
    first = time.perf_counter()
    steps = []
    for i in range(decode_tokens):
        t = time.perf_counter()
        token = int(runner.decode(token, len(prompt) + i).argmax())
        steps.append(time.perf_counter() - t)
    return {"ttft_s": first - start, "prefill_tokens_per_s": len(prompt) / (first - start),
            "decode_tokens_per_s": decode_tokens / sum(steps), "token_latencies_s": steps}


def measure(runner: StepRunner, prompt: list[int], protocol: LatencyProtocol) -> dict:
    runs = [_one_run(runner, prompt, protocol.decode_tokens) for _ in range(protocol.warmup + protocol.repeats)]
    kept = runs[protocol.warmup:]
    return {
        "prompt_tokens": len(prompt), **protocol.to_dict(),
        **{key: spread([r[key] for r in kept]) for key in ("ttft_s", "prefill_tokens_per_s", "decode_tokens_per_s")},
        "token_latencies_s": [s for r in kept for s in r["token_latencies_s"]],
    }


def memory_bound_fraction(decode_tokens_per_s: float, artifact_bytes: int, bandwidth_gb_s: float | None) -> float | None:
    """Decode speed as a fraction of the bytes-per-token bound: every weight byte is read once per token."""
    if not bandwidth_gb_s:
        return None
    return decode_tokens_per_s / (bandwidth_gb_s * 1e9 / artifact_bytes)
