"""Regressions against the last result of the same model, recipe, runner and device, judged against the
run-to-run spread (ExecuTorch's analyze_latency_stability scores series the same way: coefficient of
variation and p99/p50), never against a bare difference: a series too noisy to judge is flagged as such."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

NOISY_CV = 0.10  # decode speed's coefficient of variation above which a series is too noisy to judge
NOISY_P99_P50 = 3.0  # a per-token latency tail this long: throttling or a busy device
MIN_DROP = 0.05  # a decode slowdown smaller than this is never flagged, however quiet the series
KLD_RISE = 1.10  # accuracy is near deterministic: 10% more KL divergence (and above 1e-6) is a change


@dataclass(frozen=True)
class Verdict:
    job_key: str
    device_id: str
    recipe: str
    runner: str
    flags: tuple[str, ...]  # decode_regression | kld_regression | too_noisy | first_result
    decode_change: float | None  # relative change of the median decode speed
    kld_change: float | None
    cv: float | None


def _cv(runs: list[float]) -> float | None:
    return statistics.pstdev(runs) / statistics.mean(runs) if len(runs) > 1 and statistics.mean(runs) else None


def judge(current, previous) -> Verdict:
    """`current` and `previous` are result rows (previous: None for the first of its series)."""
    now, before = current.summary, previous.summary if previous else None
    base = dict(job_key=current.job_key, device_id=current.device_id, recipe=current.recipe, runner=current.runner)
    if "error" in now:
        return Verdict(**base, flags=("job_error",), decode_change=None, kld_change=None, cv=None)
    if before is None or "error" in before:
        return Verdict(**base, flags=("first_result",), decode_change=None, kld_change=None, cv=_cv(now["decode_runs"]))
    cvs = [c for c in (_cv(now["decode_runs"]), _cv(before["decode_runs"])) if c is not None]
    noise = max(cvs) if cvs else 0.0
    tail = max(now.get("token_p99_over_p50") or 0, before.get("token_p99_over_p50") or 0)
    change = now["decode_tokens_per_s"] / before["decode_tokens_per_s"] - 1
    flags = []
    if noise > NOISY_CV or tail > NOISY_P99_P50:
        flags.append("too_noisy")
    elif change < -max(MIN_DROP, 3 * noise):
        flags.append("decode_regression")
    kld_change = None
    if "kld_mean" in now and "kld_mean" in before:
        kld_change = now["kld_mean"] / before["kld_mean"] - 1 if before["kld_mean"] else None
        if now["kld_mean"] > max(before["kld_mean"] * KLD_RISE, 1e-6):
            flags.append("kld_regression")
    return Verdict(**base, flags=tuple(flags), decode_change=change, kld_change=kld_change, cv=noise)


def previous_result(store, row):
    """The last result of the same model, recipe, runner and device before `row`."""
    return next((r for r in store.results(model=row.model, recipe=row.recipe, device=row.device_id, before=row.created)
                 if r.runner == row.runner), None)


def judge_run(store, run_id: str) -> list[Verdict]:
    return [judge(row, previous_result(store, row)) for row in store.results(run_id=run_id)]
