"""A runner's accuracy against the bundle's golden outputs: against the full model (what gates judge)
and against the quantized eager model (the lowering gap: what the export and runtime changed)."""

from __future__ import annotations

from runtime_tests.gates import ACCURACY_HEADLINE
from runtime_tests.golden import Golden
from runtime_tests.latency import greedy
from runtime_tests.metrics import compare_to_reference, greedy_summary


def accuracy_of(runner, golden: Golden) -> dict:
    logits = runner.teacher_forced_logits(golden.ids)
    runs = [greedy(runner, p, golden.greedy_tokens) for p in golden.prompts]
    result = {}
    for name, ref in golden.references.items():
        metrics = compare_to_reference(ref, logits, golden.ids)
        metrics.update(greedy_summary(ref.greedy, runs, golden.greedy_tokens))
        result[name] = metrics
    vs_full = result["full"]
    return {**{k: vs_full[k] for k in ACCURACY_HEADLINE}, "greedy_tokens": golden.greedy_tokens,
            "greedy_match_lengths": vs_full["greedy_match_lengths"], "greedy_identical": vs_full["greedy_identical"],
            "vs_full": vs_full, "lowering_gap": result.get("quantized")}
