"""Latency as the field measures it, raw: each run's time to first token and per-token decode times,
after warm-up runs; the host takes medians and spread. Greedy decoding for the golden prompts."""

from __future__ import annotations

import time


def greedy(model, prompt: list[int], new_tokens: int) -> list[int]:
    """Exactly `new_tokens` argmax tokens (EOS does not stop it, so runs compare at equal length)."""
    tokens = [int(model.prefill(prompt).argmax())]
    for i in range(new_tokens - 1):
        tokens.append(int(model.decode(tokens[-1], len(prompt) + i).argmax()))
    return tokens


def one_run(model, prompt: list[int], decode_tokens: int) -> dict:
    start = time.perf_counter()
    token = int(model.prefill(prompt).argmax())
    first = time.perf_counter()
    steps = []
    for i in range(decode_tokens):
        t = time.perf_counter()
        token = int(model.decode(token, len(prompt) + i).argmax())
        steps.append(time.perf_counter() - t)
    return {"ttft_s": first - start, "token_latencies_s": steps}


def timed_runs(model, prompt: list[int], decode_tokens: int, warmup: int, repeats: int) -> list[dict]:
    runs = [one_run(model, prompt, decode_tokens) for _ in range(warmup + repeats)]
    return runs[warmup:]
