"""report.html for one check: verdict, gates, the two accuracy gaps, latency per runner, plots."""

from __future__ import annotations

from llamaport.runtime_tests import html, plots
from llamaport.runtime_tests.gates import STANDARD_ERROR, noise_verdict, standard_error
from llamaport.runtime_tests.manifest import ACCURACY_HEADLINE
from llamaport.runtime_tests.report import Report, RunnerResult

# The accuracy rows: each metric once, its standard error beside it ("0.0021 ± 0.0003"), not a row of its own.
_ACCURACY_ROWS = tuple(m for m in ACCURACY_HEADLINE if m not in STANDARD_ERROR.values())


def _with_se(record, metric: str):
    """`metric` of `record` (a Metrics, Summary or None), with its standard error where one was measured."""
    value = getattr(record, metric, None)
    se = standard_error(record, metric)
    return value if value is None or se is None else f"{html.fmt(value)} ± {html.fmt(se)}"


def _gate_table(report: Report, measured, value_header: str) -> str:
    """Each gate, its value ± standard error, how far it was missed and whether that is beyond the noise
    (a miss of more than 2 standard errors; runtime_tests.gates)."""
    missed = {f.gate: f for f in report.gate_failures}
    rows = [[g, _with_se(measured, g.split()[0]), missed[g].missed_by if g in missed else None,
             noise_verdict(missed[g]) if g in missed else None] for g in report.gates]
    return html.table(["gate", value_header, "missed by", "miss vs noise (2 SE)"], rows,
                      ["fail" if g in missed else "" for g in report.gates])


def _kld_statement(m) -> str:
    """How exact the KL divergence is: every logit compared, or an interval from an adaptive top-k."""
    if m.logits_compared == "full" or m.kld_lower_mean is None:
        return "exact: the golden outputs keep every logit"
    return (f"bounded: the golden outputs keep each position's most probable ids (to 1 − 1e-6 of its probability, "
            f"capped), so the full-vocabulary KLD lies in [{m.kld_lower_mean:.3e}, {m.kld_mean:.3e}]; "
            "the upper end is reported and gated")


def _latency_rows(results: dict[str, RunnerResult]) -> list[list]:
    rows = []
    for name, r in results.items():
        lat = r.latency

        def med(spread, scale=1.0):
            return None if spread is None else spread.median * scale

        def rng(spread):
            return None if spread is None else f"{spread.min:.4g}–{spread.max:.4g}"
        rows.append([name, r.load_s, med(lat.ttft_s, 1000), med(lat.prefill_tokens_per_s), med(lat.decode_tokens_per_s),
                     rng(lat.decode_tokens_per_s), r.peak_rss_mb, r.rss_before_load_mb])
    return rows


def _render_not_runnable(report: Report) -> str:
    """Nothing ran: why, and the build's checks (the quantized eager model vs the full model), gated."""
    b, gap = report.bundle, report.quantization_gap
    verdict = ('<p class="pass">PASSED: every gate holds on the quantized eager model</p>' if report.passed else
               f'<p class="fail">FAILED: {len(report.gate_failures)} gate(s) missed by the quantized eager model</p>')
    gates = _gate_table(report, gap, "value (quantized eager model)")
    accuracy = html.table(["metric", "quantized eager model vs full model (the build's check)"],
                          [[m, _with_se(gap, m)] for m in _ACCURACY_ROWS])
    facts = html.table(["checked", "what"], [
        ["recipe", b.recipe.id], ["target", b.target], ["artifact", f"{b.artifact.path} ({b.artifact.bytes:,} bytes)"],
        ["eval", f"{gap.positions} teacher-forced positions; greedy {gap.greedy_tokens} tokens"],
        ["created", report.created]])
    return html.page(f"llamaport check: {b.recipe.id} (not run)", [
        verdict, html.paragraph(report.not_runnable_here), facts, html.heading("Gates"), gates,
        html.heading("Accuracy measured at build time"), accuracy,
        html.image(plots.kld_per_position({"quantized eager model vs full": list(gap.kld_per_position)}),
                   "per-position KLD")])


def render(report: Report) -> str:
    if report.not_runnable_here:
        return _render_not_runnable(report)
    b, s = report.bundle, report.summary
    primary = report.primary
    verdict = ('<p class="pass">PASSED: every gate holds</p>' if report.passed else
               f'<p class="fail">FAILED: {len(report.gate_failures)} gate(s) missed</p>')
    gates = _gate_table(report, s, "value")
    lowering = primary.accuracy.lowering_gap
    accuracy = html.table(
        ["metric", "quantization gap (quantized reference vs full)", "lowering gap (device vs quantized reference)",
         "device vs full model"],
        [[m, _with_se(report.quantization_gap, m), _with_se(lowering, m), _with_se(s, m)] for m in _ACCURACY_ROWS])
    speedups = html.table(["baseline", "decode speed-up", "time-to-first-token speed-up"],
                          [[k, v.decode, v.ttft] for k, v in report.speedups.items()]) if report.speedups else ""
    latency = html.table(["runner", "load s", "TTFT ms", "prefill tok/s", "decode tok/s (median)", "decode range",
                          "peak RSS MB", "RSS before load MB"], _latency_rows(report.timed()))
    vs_full = primary.accuracy.vs_full
    kld = {"quantized reference vs full (quantization gap)": list(report.quantization_gap.kld_per_position),
           "device vs full": list(vs_full.kld_per_position)}
    token_ms = {n: [t * 1000 for t in r.latency.token_latencies_s] for n, r in report.timed().items()
                if r.latency.token_latencies_s}
    p = report.protocol
    facts = html.table(["checked", "what"], [
        ["recipe", b.recipe.id], ["target", b.target], ["artifact", f"{b.artifact.path} ({b.artifact.bytes:,} bytes)"],
        ["device", f"{report.device.name} ({report.device.platform}, {report.device.cpu_count} CPUs)"],
        ["eval", f"{vs_full.positions} teacher-forced positions; greedy {vs_full.greedy_tokens} tokens"],
        ["KL divergence", _kld_statement(vs_full)],
        ["latency protocol", "not timed: the runner is a simulator (see the NPU estimate)" if report.simulator else
                             f"prompt {s.prompt_tokens} tokens, decode {p.decode_tokens} tokens, "
                             f"{p.warmup} warm-up + {p.repeats} repeats, medians"],
        ["decode vs bandwidth bound", s.decode_fraction_of_bandwidth_bound], ["created", report.created]])
    return html.page(f"llamaport check: {b.recipe.id} on {report.device.name}", [
        verdict, facts, *_npu_parts(report), html.heading("Gates"), gates, html.heading("Accuracy against the full model"),
        accuracy, html.image(plots.kld_per_position(kld), "per-position KLD"), html.heading("Latency"), latency, speedups,
        html.image(plots.latency_distribution(token_ms), "decode latency distribution")])


def _npu_parts(report: Report) -> list[str]:
    """What ran instead of the hardware, and the NPU compiler's estimate, each said to be what it is."""
    parts = []
    if report.simulator:
        parts.append(f'<p class="fail">Not run on the NPU: this bundle was run by {html.html.escape(report.simulator)}.</p>')
    est = report.npu_estimate
    if est is not None:
        parts += [html.heading(f"NPU estimate ({est.compiler}): an estimate, not a measurement"), html.table(
            ["estimated", "value"],
            [["accelerator", f"{est.accelerator} ({est.system_config}, {est.memory_mode}, {est.clock_mhz:g} MHz)"],
             [f"time per {est.forward_tokens}-token forward (ms)", est.estimated_ms],
             ["tokens/s if each token were one forward", 1000.0 / est.estimated_ms],
             ["NPU / total cycles", f"{est.npu_cycles:,} / {est.total_cycles:,}"],
             ["SRAM bytes", est.sram_bytes], ["flash bytes", est.flash_bytes],
             ["NPU delegates (NPU ops each)", ", ".join(str(d.npu_ops) for d in est.delegates)],
             ["ops left on the CPU", ", ".join(f"{k} x{v}" for k, v in est.cpu_ops.items()) or "none"]])]
    dec = report.npu_decode_estimate
    if dec is not None:
        parts += [html.heading("Decode program (one token, int8 KV cache): Vela's estimate"), html.table(
            ["estimated", "value"],
            [["time per token (ms)", dec.estimated_ms], ["decode tokens/s", 1000.0 / dec.estimated_ms],
             ["NPU / total cycles", f"{dec.npu_cycles:,} / {dec.total_cycles:,}"], ["SRAM bytes", dec.sram_bytes],
             ["flash bytes", dec.flash_bytes],
             ["NPU delegates (NPU ops each)", ", ".join(str(d.npu_ops) for d in dec.delegates)],
             ["ops left on the CPU", ", ".join(f"{k} x{v}" for k, v in dec.cpu_ops.items()) or "none"]])]
    return parts
