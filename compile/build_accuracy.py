"""The build's own gate: the artifact on this host's runtime against the golden outputs, scored by the
code a device runs, with the target's accuracy gates (latency gates wait for `llamaport check`)."""

from __future__ import annotations

from llamaport.runtime_tests.manifest import BuildAccuracy, Headline


def gate_build(build) -> tuple[BuildAccuracy, dict]:
    """(what the manifest records, what check/accuracy.json holds)."""
    from llamaport.runtime_tests.accuracy import accuracy_of
    from llamaport.runtime_tests.device_job import load_model
    from llamaport.runtime_tests.gates import missed_gates

    runner = build.runtime_entry.runners[0]  # the runner that gives a check its headline
    model = load_model(runner, build.staging, build.runtime_entry, build.model_facts)
    detail = accuracy_of(model, build.golden)
    vs_full = Headline.of(detail["vs_full"])
    gates = [g for g in build.target.gates if g.metric in vars(vs_full)]
    failures = missed_gates(vs_full, gates)
    result = BuildAccuracy(vs_full=vs_full, quantization_gap=Headline.of(build.golden.quantization_gap),
                           greedy_identical=detail["vs_full"]["greedy_identical"],
                           gates=tuple(g.describe() for g in gates), gate_failures=failures)
    detail = {**detail, "quantization_gap": build.golden.quantization_gap, "gates": list(result.gates),
              "gate_failures": [vars(f) for f in failures]}
    return result, detail
