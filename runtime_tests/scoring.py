"""The host's half of a check: a device's raw results scored against the bundle's golden outputs, and its
raw timings turned into medians and spread. Every runtime is scored by this same code."""

from __future__ import annotations

import json

import numpy as np

from llamaport.runtime_tests.device.drivers.executorch_llm import OBSERVER_TAG
from llamaport.runtime_tests.latency import spread


def golden_topk_ids(golden) -> dict:
    """What a device needs of each adaptive top-k reference (runtime_tests.device.scores.KeptIds)."""
    return {n: kept_ids_of(r) for n, r in golden.references.items() if r.kind == "topk"}


def kept_ids_of(ref):
    from llamaport.runtime_tests.device.golden_file import tail_spread
    from llamaport.runtime_tests.device.scores import KeptIds

    return KeptIds(ids=ref.topk_ids.numpy(), counts=ref.topk_counts.numpy(),
                   spread=tail_spread(ref.tail_mass.numpy(), ref.tail_pmax.numpy()))


def score(golden, scores: dict[str, np.ndarray], greedy_runs: list[list[int]]) -> dict:
    """report.RunnerAccuracy's fields: against the full model, and against the quantized reference."""
    from llamaport.runtime_tests.metrics import compare_scores, greedy_summary

    result = {}
    for name, ref in golden.references.items():
        metrics = compare_scores(ref, name, scores, golden.ids)
        metrics.update(greedy_summary(ref.greedy, greedy_runs, golden.greedy_tokens))
        result[name] = metrics
    return {"vs_full": result["full"], "lowering_gap": result.get("quantized")}


def latency_from_runs(runs: list[dict], prompt_tokens: int, protocol: dict) -> dict:
    """report.Latency's fields from a driver's timed runs (time to first token, per-token decode times);
    a driver that is not timed (a simulator) has no runs and no latency."""
    if not runs:
        return {"prompt_tokens": prompt_tokens, **protocol, "ttft_s": None, "prefill_tokens_per_s": None,
                "decode_tokens_per_s": None, "token_latencies_s": []}
    ttft = [r["ttft_s"] for r in runs]
    decode = [len(r["token_latencies_s"]) / sum(r["token_latencies_s"]) for r in runs]
    return {"prompt_tokens": prompt_tokens, **protocol, "ttft_s": spread(ttft),
            "prefill_tokens_per_s": spread([prompt_tokens / t for t in ttft]), "decode_tokens_per_s": spread(decode),
            "token_latencies_s": [s for r in runs for s in r["token_latencies_s"]]}


def parse_observer(line: str) -> dict:
    """One `PyTorchObserver {json}` line (ExecuTorch's extension/llm/runner/stats.h) as per-run figures.
    Its clock is whole milliseconds: a span under it is unmeasured (None), not 0 or infinity."""
    stats = json.loads(line[len(OBSERVER_TAG):] if line.startswith(OBSERVER_TAG) else line)
    ms = 1000.0 / stats["SCALING_FACTOR_UNITS_PER_SECOND"]
    prefill_ms = (stats["prompt_eval_end_ms"] - stats["inference_start_ms"]) * ms
    decode_ms = (stats["inference_end_ms"] - stats["first_token_ms"]) * ms
    ttft_ms = (stats["first_token_ms"] - stats["inference_start_ms"]) * ms
    decoded = stats["generated_tokens"] - 1
    return {"ttft_s": ttft_ms / 1000 if ttft_ms > 0 else None,
            "prefill_tokens_per_s": stats["prompt_tokens"] / (prefill_ms / 1000) if prefill_ms > 0 else None,
            "decode_tokens_per_s": decoded / (decode_ms / 1000) if decode_ms > 0 and decoded > 0 else None,
            "prompt_tokens": stats["prompt_tokens"], "generated_tokens": stats["generated_tokens"],
            "load_s": (stats["model_load_end_ms"] - stats["model_load_start_ms"]) * ms / 1000}


def latency_from_observer(lines: list[str], protocol: dict) -> tuple[dict, float, int]:
    """(report.Latency's fields, load seconds, prompt tokens) from the LLM runner's observer lines."""
    runs = [parse_observer(line) for line in lines]

    def spread_or_none(key):
        kept = [r[key] for r in runs if r[key] is not None]
        return spread(kept) if kept else None
    latency = {"prompt_tokens": runs[0]["prompt_tokens"], **protocol, "clock_resolution_s": 0.001,
               "generated_tokens": float(np.median([r["generated_tokens"] for r in runs])),
               **{k: spread_or_none(k) for k in ("ttft_s", "prefill_tokens_per_s", "decode_tokens_per_s")}}
    return latency, runs[0]["load_s"], runs[0]["prompt_tokens"]
