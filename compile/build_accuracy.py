"""The build's own gate: the artifact on this host's runtime against the golden outputs, scored by the
code a device runs, with the target's accuracy gates (latency gates wait for `llamaport check`)."""

from __future__ import annotations

from llamaport.runtime_tests.manifest import BuildAccuracy, Headline


def gate_build(build) -> tuple[BuildAccuracy, dict]:
    """(what the manifest records, what check/accuracy.json holds)."""
    from llamaport.runtime_tests.accuracy import accuracy_of
    from llamaport.runtime_tests.device_job import load_model
    from llamaport.runtime_tests.gates import missed_gates

    not_runnable = not_runnable_here(build.target)
    if not_runnable is not None:  # compiled for hardware this host lacks: the eager quantized model is what runs here
        return _eager_only(build, not_runnable)
    runner = build.runtime_entry.runners[0]  # the runner that gives a check its headline
    model = load_model(runner, build.staging, build.runtime_entry, build.model_facts)
    detail = accuracy_of(model, build.golden)
    vs_full = Headline.of(detail["vs_full"])
    gates = [g for g in build.target.gates if g.metric in vars(vs_full)]
    failures = missed_gates(vs_full, gates) + _npu_gates(build, gates)
    result = BuildAccuracy(vs_full=vs_full, quantization_gap=Headline.of(build.golden.quantization_gap),
                           greedy_identical=detail["vs_full"]["greedy_identical"],
                           gates=tuple(g.describe() for g in gates), gate_failures=failures, measured_by=runner)
    detail = {**detail, "quantization_gap": build.golden.quantization_gap, "gates": list(result.gates),
              "gate_failures": [vars(f) for f in failures]}
    return result, detail


def _npu_gates(build, gates: list) -> tuple:
    """The target's NPU gates (flash, SRAM, estimated ms) against the NPU compiler's estimate; appended to `gates`."""
    from llamaport.runtime_tests.gates import missed_gates
    from llamaport.targets.profiles import NPU_GATE_METRICS

    npu = [g for g in build.target.gates if g.metric in NPU_GATE_METRICS]
    gates.extend(npu)
    return missed_gates(build.exported.lowering.npu_gate_values(), npu) if npu else ()


def not_runnable_here(target) -> str | None:
    """Why this host cannot run what the target's primary backend compiles, or None."""
    from llamaport.targets.backends import BACKENDS

    return BACKENDS[target.primary_backend].not_runnable_here


def _eager_only(build, why: str) -> tuple[BuildAccuracy, dict]:
    """The checks that can run here: the quantized eager model against the full model, gated like an artifact."""
    from llamaport.runtime_tests.gates import missed_gates

    gap = build.golden.quantization_gap
    headline = Headline.of(gap)
    gates = [g for g in build.target.gates if g.metric in vars(headline)]
    failures = missed_gates(headline, gates)
    identical = bool(gap.get("greedy_identical", headline.greedy_match_pct == 100.0))
    result = BuildAccuracy(vs_full=headline, quantization_gap=headline, greedy_identical=identical,
                           gates=tuple(g.describe() for g in gates), gate_failures=failures,
                           measured_by="quantized eager model", not_runnable_here=f"compiled; not runnable on this host: {why}")
    detail = {"vs_full": None, "quantization_gap": gap, "measured_by": result.measured_by,
              "not_runnable_here": result.not_runnable_here, "gates": list(result.gates),
              "gate_failures": [vars(f) for f in failures]}
    return result, detail
