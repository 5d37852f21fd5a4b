"""Latency the way the field measures it: a stated prompt, warm-up runs, several repeats, medians and
spread. Time to first token = prefill + choosing the first token; decode tokens/s over the tokens after it."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class LatencyProtocol:
    decode_tokens: int = 64
    warmup: int = 1
    repeats: int = 5

    def to_dict(self) -> dict:
        return asdict(self)


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": list(values)}


def measure(model, prompt: list[int], protocol: LatencyProtocol) -> dict:
    """report.Latency's fields for a model object in this process (benchmarks, the eager baseline), by the
    device's own timing loop and the host's own reduction."""
    from llamaport.runtime_tests.device.timing import timed_runs
    from llamaport.runtime_tests.scoring import latency_from_runs

    runs = timed_runs(model, prompt, protocol.decode_tokens, protocol.warmup, protocol.repeats)
    return latency_from_runs(runs, len(prompt), protocol.to_dict())


def memory_bound_fraction(decode_tokens_per_s: float, artifact_bytes: int, bandwidth_gb_s: float | None) -> float | None:
    """Decode speed as a fraction of the bytes-per-token bound: every weight byte is read once per token."""
    if not bandwidth_gb_s:
        return None
    return decode_tokens_per_s / (bandwidth_gb_s * 1e9 / artifact_bytes)
