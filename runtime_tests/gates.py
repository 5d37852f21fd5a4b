"""Gates against measured metrics: which are missed and by how much; command-line overrides."""

from __future__ import annotations

from llamaport.errors import ConfigError
from llamaport.runtime_tests.manifest import GateFailure
from llamaport.targets import Gate


def missed_gates(measured, gates) -> tuple[GateFailure, ...]:
    """`measured` is any record with the gates' metrics as attributes (a Summary, a Headline)."""
    failures = []
    for gate in gates:
        value = getattr(measured, gate.metric, None)
        if value is None:
            raise ConfigError(f"gate {gate.describe()}: metric {gate.metric!r} was not measured here")
        by = gate.missed_by(value)
        if by is not None:
            failures.append(GateFailure(gate=gate.describe(), metric=gate.metric, value=value, missed_by=by))
    return tuple(failures)


def with_overrides(gates, overrides: list[Gate]) -> tuple[Gate, ...]:
    """The target's gates with each overridden metric's bound replaced (a metric has one bound)."""
    replaced = {g.metric for g in overrides}
    return tuple(g for g in gates if g.metric not in replaced) + tuple(overrides)
