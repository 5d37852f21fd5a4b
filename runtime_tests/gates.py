"""Gates against measured metrics: which are missed and by how much; command-line overrides."""

from __future__ import annotations

from targets import Gate

# The accuracy metrics (all against the full model) that gates, manifests and reports read.
ACCURACY_HEADLINE = ("same_top1_pct", "kld_mean", "kld_p99", "ppl_ratio", "logit_sqnr_db", "max_abs_logit_error",
                     "greedy_match_pct")


def missed_gates(metrics: dict, gates) -> list[dict]:
    failures = []
    for gate in gates:
        if metrics.get(gate.metric) is None:
            raise KeyError(f"gate {gate.describe()}: metric {gate.metric!r} was not measured")
        by = gate.missed_by(metrics[gate.metric])
        if by is not None:
            failures.append({"gate": gate.describe(), "metric": gate.metric, "value": metrics[gate.metric],
                             "missed_by": by})
    return failures


def with_overrides(gates, overrides: list[Gate]) -> tuple[Gate, ...]:
    """The target's gates with each overridden metric's bound replaced (a metric has one bound)."""
    replaced = {g.metric for g in overrides}
    return tuple(g for g in gates if g.metric not in replaced) + tuple(overrides)
