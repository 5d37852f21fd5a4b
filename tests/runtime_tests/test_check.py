"""`llamaport check` on real bundles: runners from the bundle alone, metrics against the golden outputs,
latency with spread, gates, reports, compare. Bundles and reports are made once per session."""

import json
import shutil

import pytest
from typer.testing import CliRunner

from llamaport.cli import app
from llamaport.compile.pipeline import DEFAULT_MODEL
from llamaport.runtime_tests.golden import Golden
from llamaport.runtime_tests.latency import LatencyProtocol
from llamaport.runtime_tests.manifest import GOLDEN_PATH
from llamaport.runtime_tests.report import REPORT_SCHEMA_VERSION, Report


def test_bundle_carries_compact_golden_outputs(bundle):
    build = bundle(DEFAULT_MODEL, "et-xnnpack-8da4w-g32")
    golden, info = Golden.load(build.bundle / GOLDEN_PATH), build.manifest.golden
    assert info.positions == len(golden.ids) - 1 == 255
    assert info.references == {"full": "full", "quantized": "full"}  # vocab 512: every logit
    # two references x 255 positions x 512 fp32 logits, plus float64 lse / next-token log-prob and greedy ids
    assert info.bytes == (build.bundle / GOLDEN_PATH).stat().st_size < 1.1e6
    assert len(golden.latency_prompt) == info.latency_prompt_tokens >= 24
    assert golden.latency_prompt[0] == build.manifest.model.bos_id


def test_fp32_check_matches_the_full_model_on_both_runners(checked):
    report, _ = checked(DEFAULT_MODEL, "et-xnnpack-fp32")
    s = report.summary
    assert s.kld_mean < 1e-6 and s.same_top1_pct == 100.0 and s.greedy_match_pct == 100.0
    assert s.logit_sqnr_db > 80 and s.ppl_ratio == pytest.approx(1.0, abs=1e-5)
    lowering = report.runners["executorch-runtime"].accuracy.lowering_gap
    assert report.quantization_gap.kld_mean < 1e-9 and lowering.kld_mean < 1e-9  # fp32: neither step changes the model
    llm = report.runners["executorch-llm-runner"]
    assert llm.prompt_tokens_match and llm.accuracy is None
    assert llm.latency.prompt_tokens == s.prompt_tokens


def test_latency_is_reported_with_medians_and_spread(checked):
    report, _ = checked(DEFAULT_MODEL, "et-xnnpack-8da4w-g32", baselines=True)
    lat = report.runners["executorch-runtime"].latency
    assert (lat.warmup, lat.repeats, lat.decode_tokens) == (1, 5, 64)
    for spread in (lat.ttft_s, lat.prefill_tokens_per_s, lat.decode_tokens_per_s):
        assert len(spread.runs) == 5 and spread.min <= spread.median <= spread.max
    assert len(lat.token_latencies_s) == 5 * 64
    for r in report.runners.values():
        assert r.peak_rss_mb >= r.rss_before_load_mb > 0 and r.load_s >= 0
    from pathlib import Path
    assert report.summary.artifact_bytes == (Path(report.bundle.path) / report.bundle.artifact.path).stat().st_size


def test_speedups_are_measured_against_eager_and_the_fp32_pte(checked):
    report, _ = checked(DEFAULT_MODEL, "et-xnnpack-8da4w-g32", baselines=True)
    assert set(report.baselines) == {"eager-transformers", "fp32-pte"}
    decode = report.summary.decode_tokens_per_s
    for name, baseline in report.baselines.items():
        assert report.speedups[name].decode == decode / baseline.latency.decode_tokens_per_s.median
    # the eager baseline also scored the golden outputs: the full model against its own golden
    assert report.baselines["eager-transformers"].accuracy.vs_full.kld_mean < 1e-9


def test_checking_the_same_bundle_twice_gives_identical_accuracy(bundle, checked):
    from llamaport.check_options import check_request
    from llamaport.runtime_tests.harness import check_bundle

    first, _ = checked(DEFAULT_MODEL, "et-xnnpack-8da4w-g32", baselines=True)
    again = check_bundle(check_request(bundle(DEFAULT_MODEL, "et-xnnpack-8da4w-g32").bundle, "local", None, None, (),
                                       LatencyProtocol(16, 0, 2)))
    assert again.runners["executorch-runtime"].accuracy == first.runners["executorch-runtime"].accuracy
    assert first.summary.same_top1_pct >= 90.0 and first.summary.ppl_ratio <= 1.05


@pytest.mark.slow
def test_runners_need_only_the_bundle(sources, bundle, tmp_path):
    """The Meta-format source is moved away; the check still scores the bundle against the full model."""
    from llamaport.check_options import check_request
    from llamaport.runtime_tests.harness import check_bundle

    folder = bundle(sources["meta"], "et-xnnpack-fp32").bundle
    copy = tmp_path / "shipped"
    shutil.copytree(folder, copy)
    hidden = sources["meta"].with_name("meta-hidden")
    sources["meta"].rename(hidden)
    try:
        report = check_bundle(check_request(copy, "local", None, None, (), LatencyProtocol(8, 0, 1)))
    finally:
        hidden.rename(sources["meta"])
    assert report.summary.kld_mean < 1e-6 and report.summary.greedy_match_pct == 100.0


def test_unmeetable_gates_exit_3_with_a_table_of_what_was_missed(bundle, tmp_path):
    folder = bundle(DEFAULT_MODEL, "et-xnnpack-8da4w-g32").bundle
    result = CliRunner().invoke(app, ["check", str(folder), "--out", str(tmp_path / "r"), "--repeats", "1",
                                      "--decode-tokens", "8", "--max-kld", "1e-9", "--min-decode-tps", "1e12"])
    assert result.exit_code == 3, result.output
    assert "kld_mean <= 1e-09" in result.stderr and "decode_tokens_per_s >= 1000000000000.0" in result.stderr
    report = Report.from_dict(json.loads((tmp_path / "r" / "report.json").read_text()), "test")
    assert not report.passed
    missed = {f.metric: f.missed_by for f in report.gate_failures}
    assert set(missed) == {"kld_mean", "decode_tokens_per_s"}
    assert missed["kld_mean"] == report.summary.kld_mean - 1e-9
    assert f"{missed['kld_mean']:.6g}" in result.stderr  # the table says by how much


def test_check_json_prints_the_report(bundle, tmp_path):
    folder = bundle(DEFAULT_MODEL, "et-xnnpack-8da4w-g32").bundle
    result = CliRunner().invoke(app, ["check", str(folder), "--out", str(tmp_path / "r"), "--repeats", "1",
                                      "--decode-tokens", "8", "--json"])
    assert result.exit_code == 0, result.output
    printed = Report.from_dict(json.loads(result.stdout), "stdout")
    assert printed == Report.from_dict(json.loads((tmp_path / "r" / "report.json").read_text()), "file")


def test_a_modified_bundle_is_refused(bundle, tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(bundle(DEFAULT_MODEL, "et-xnnpack-8da4w-g32").bundle, copy)
    with open(copy / "model" / "model.pte", "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    result = CliRunner().invoke(app, ["check", str(copy), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "model.pte: differs from the manifest" in result.stderr
    assert not (tmp_path / "r").exists()


def test_report_html_is_self_contained_with_both_plots(checked):
    _, folder = checked(DEFAULT_MODEL, "et-xnnpack-8da4w-g32", baselines=True)
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "http" not in html.replace("http-equiv", "")
    for text in ("quantization gap", "lowering gap", "eager-transformers", "same_top1_pct &gt;= 85.0"):
        assert text in html
    assert json.loads((folder / "report.json").read_text())["schema_version"] == REPORT_SCHEMA_VERSION


def test_compare_puts_builds_side_by_side(checked, tmp_path):
    fp32, fp32_dir = checked(DEFAULT_MODEL, "et-xnnpack-fp32")
    q4, q4_dir = checked(DEFAULT_MODEL, "et-xnnpack-8da4w-g32", baselines=True)
    result = CliRunner().invoke(app, ["compare", str(fp32_dir), str(q4_dir / "report.json"), "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "c" / "compare.json").read_text())
    rows = {r["name"]: r for r in data["builds"]}
    assert rows["et-xnnpack-fp32"]["speedup_vs_fp32_artifact"] == 1.0
    assert rows["et-xnnpack-8da4w-g32"]["bytes_vs_fp32_artifact"] < 0.3
    assert rows["et-xnnpack-8da4w-g32"]["speedup_vs_eager"] == q4.speedups["eager-transformers"].decode
    assert data["smallest_passing"] == "et-xnnpack-8da4w-g32" and "et-xnnpack-8da4w-g32" in data["pareto_front"]
    assert (tmp_path / "c" / "compare.html").read_text().count("data:image/png;base64,") == 1
    as_json = CliRunner().invoke(app, ["compare", str(fp32_dir), str(q4_dir), "--out", str(tmp_path / "c"), "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == data
