"""A bundle through ExecuTorch's own LLM runner (TextLLMRunner, the C++ runner inside its Android and iOS
apps), timed by its own stats. It takes text, stops at EOS and reports whole milliseconds, so its
numbers are the app's view of latency; token-level accuracy comes from the executorch-runtime runner."""

from __future__ import annotations

import statistics
from pathlib import Path

from llamaport.runtime_tests.golden import Golden
from llamaport.runtime_tests.latency import LatencyProtocol, spread
from llamaport.runtime_tests.runners.executorch_runtime import _load_llm_kernels


def _per_run(stats) -> dict:
    ms = 1000.0 / stats.SCALING_FACTOR_UNITS_PER_SECOND
    prefill_ms = (stats.prompt_eval_end_ms - stats.inference_start_ms) * ms
    decode_ms = (stats.inference_end_ms - stats.first_token_ms) * ms
    decoded = stats.num_generated_tokens - 1
    ttft_ms = (stats.first_token_ms - stats.inference_start_ms) * ms
    # below the runner's 1 ms clock a span is unmeasurable: None, not 0 or infinity
    return {"ttft_s": ttft_ms / 1000 if ttft_ms > 0 else None,
            "prefill_tokens_per_s": stats.num_prompt_tokens / (prefill_ms / 1000) if prefill_ms > 0 else None,
            "decode_tokens_per_s": decoded / (decode_ms / 1000) if decode_ms > 0 and decoded > 0 else None,
            "prompt_tokens": stats.num_prompt_tokens, "generated_tokens": stats.num_generated_tokens,
            "load_s": (stats.model_load_end_ms - stats.model_load_start_ms) * ms / 1000}


def _spread_or_none(values):
    kept = [v for v in values if v is not None]
    return spread(kept) if kept else None


def run(bundle: Path, manifest, golden: Golden, protocol: LatencyProtocol, with_accuracy: bool) -> dict:
    _load_llm_kernels()
    from executorch.extension.llm.runner import GenerationConfig, TextLLMRunner

    runner = TextLLMRunner(str(bundle / manifest.runtime.model), str(bundle / manifest.runtime.tokenizer))
    config = GenerationConfig(max_new_tokens=protocol.decode_tokens + 1, temperature=0.0, echo=False, num_bos=1)
    runs = []
    for _ in range(protocol.warmup + protocol.repeats):
        stats = []
        # No token callback: its binding converts each piece to str, which fails on a byte-level piece
        # that is half a UTF-8 character; the stats are all this runner is asked for.
        runner.generate(golden.latency_prompt_text, config, token_callback=None, stats_callback=stats.append)
        runs.append(_per_run(stats[-1]))
        runner.reset()
    kept = runs[protocol.warmup:]
    latency = {"prompt_tokens": kept[0]["prompt_tokens"], **protocol.to_dict(),
               "generated_tokens": statistics.median(r["generated_tokens"] for r in kept), "clock_resolution_s": 0.001,
               **{k: _spread_or_none([r[k] for r in kept]) for k in ("ttft_s", "prefill_tokens_per_s", "decode_tokens_per_s")}}
    return {"load_s": runs[0]["load_s"], "latency": latency, "accuracy": None,
            "prompt_tokens_match": kept[0]["prompt_tokens"] == len(golden.latency_prompt)}
