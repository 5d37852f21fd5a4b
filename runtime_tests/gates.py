"""Gates against measured metrics: which are missed, by how much, and whether beyond the noise; command-line
overrides."""

from __future__ import annotations

from llamaport.errors import ConfigError
from llamaport.runtime_tests.manifest import GateFailure
from llamaport.targets import Gate

# A metric -> the field of the same record holding its standard error (runtime_tests.metrics.spread_statistics).
# Metrics without one (SQNR, the KLD percentiles, latency, size) are judged without noise: None.
STANDARD_ERROR = {"same_top1_pct": "same_top1_se_pct", "kld_mean": "kld_se", "ppl_ratio": "ppl_ratio_se",
                  "delta_p_mean_pct": "delta_p_se_pct", "delta_p_rms_pct": "delta_p_rms_se_pct"}
# A metric measured as an interval -> the field holding its lower end (the metric itself is the upper end).
LOWER_END = {"kld_mean": "kld_lower_mean"}
# A miss is beyond the noise when it exceeds this many standard errors: a mean lies within 2σ of its
# expectation about 95 % of the time (normal approximation), so a bigger miss is unlikely to be chance. The
# errors, like llama.cpp's, treat positions as independent; neighbouring tokens are not, so the true noise is
# somewhat larger and "within noise" is the verdict to trust more.
NOISE_SIGMAS = 2.0


def standard_error(measured, metric: str) -> float | None:
    """The standard error of `metric` in `measured`, or None where it has none or it was not measured."""
    name = STANDARD_ERROR.get(metric)
    return getattr(measured, name, None) if name else None


def missed_gates(measured, gates) -> tuple[GateFailure, ...]:
    """`measured` is any record with the gates' metrics as attributes (a Summary, a Headline), and, where
    measured, their standard errors (STANDARD_ERROR)."""
    failures = []
    for gate in gates:
        value = getattr(measured, gate.metric, None)
        if value is None:
            raise ConfigError(f"gate {gate.describe()}: metric {gate.metric!r} was not measured here")
        by = gate.missed_by(value)
        if by is not None:
            se = standard_error(measured, gate.metric)
            lower = getattr(measured, LOWER_END.get(gate.metric, ""), None)
            undecided = lower if lower is not None and gate.missed_by(lower) is None else None
            failures.append(GateFailure(gate=gate.describe(), metric=gate.metric, value=value, missed_by=by,
                                        standard_error=se, beyond_noise=None if se is None else by > NOISE_SIGMAS * se,
                                        undecided_lower=undecided))
    return tuple(failures)


def noise_verdict(failure: GateFailure) -> str:
    """How a table says a miss compares with the noise: "beyond noise", "within noise", or "–" (no error known)."""
    if failure.undecided_lower is not None:
        return f"undecided: golden bounds it to [{failure.undecided_lower:.3g}, {failure.value:.3g}]"
    if failure.beyond_noise is None:
        return "–"
    return "beyond noise" if failure.beyond_noise else "within noise"


def with_overrides(gates, overrides: list[Gate]) -> tuple[Gate, ...]:
    """The target's gates with each overridden metric's bound replaced (a metric has one bound)."""
    replaced = {g.metric for g in overrides}
    return tuple(g for g in gates if g.metric not in replaced) + tuple(overrides)
