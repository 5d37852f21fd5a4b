"""A runner's accuracy against the bundle's golden outputs: against the full model (what gates judge)
and against the quantized reference (the lowering gap: what the export and runtime changed). The fields
of report.RunnerAccuracy, as plain data: it travels from the device as JSON."""

from __future__ import annotations

from llamaport.runtime_tests.golden import Golden
from llamaport.runtime_tests.latency import greedy
from llamaport.runtime_tests.metrics import compare_to_reference, greedy_summary


def accuracy_of(runner, golden: Golden) -> dict:
    logits = runner.teacher_forced_logits(golden.ids)
    runs = [greedy(runner, p, golden.greedy_tokens) for p in golden.prompts]
    result = {}
    for name, ref in golden.references.items():
        metrics = compare_to_reference(ref, logits, golden.ids)
        metrics.update(greedy_summary(ref.greedy, runs, golden.greedy_tokens))
        result[name] = metrics
    return {"vs_full": result["full"], "lowering_gap": result.get("quantized")}
