"""`llamaport build --target linux-x86_64-ort` and `llamaport check` on ONNX bundles: the same CLI, harness,
metrics, gates and reports as ExecuTorch bundles, with onnxruntime-genai's and onnxruntime's runners."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llamaport.cli import app
from llamaport.compile.pipeline import DEFAULT_MODEL
from llamaport.runtime_tests.manifest import read_manifest
from llamaport.runtime_tests.report import read_report


def test_check_runs_both_onnx_runners_from_the_bundle_with_baselines(checked):
    report, folder = checked(DEFAULT_MODEL, "ortgenai-cpu-8da4w-g32", baselines=True)
    assert set(report.runners) == {"onnxruntime-genai", "onnxruntime"}
    assert set(report.baselines) == {"eager-transformers", "fp32-onnx"}
    genai, plain = (report.runners[k].accuracy.vs_full for k in ("onnxruntime-genai", "onnxruntime"))
    # one graph, two runtimes driving it: the same scores
    assert abs(genai.kld_mean - plain.kld_mean) < 1e-5 and genai.same_top1_pct == plain.same_top1_pct
    s = report.summary
    assert s.same_top1_pct >= 90.0 and s.ppl_ratio <= 1.05 and report.passed
    manifest = read_manifest(Path(report.bundle.path))
    sizes = {f.path: f.bytes for f in manifest.files}
    assert s.artifact_bytes == sizes["model/model.onnx"] + sizes["model/model.onnx.data"]
    for name, b in report.baselines.items():
        assert report.speedups[name].decode == s.decode_tokens_per_s / b.latency.decode_tokens_per_s.median
    assert report.runners["onnxruntime-genai"].latency.prompt_tokens == s.prompt_tokens >= 24
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "onnxruntime-genai" in html


@pytest.mark.slow
def test_cli_builds_for_the_ort_target_by_its_default_recipe_and_checks_it(tmp_path):
    runner = CliRunner()
    plan = runner.invoke(app, ["build", "--target", "linux-x86_64-ort", "--dry-run", "--json", "--out", str(tmp_path / "x")])
    assert plan.exit_code == 0 and json.loads(plan.stdout)["recipe"] == "ortgenai-cpu-8da4w-g32"
    out = tmp_path / "b"
    built = runner.invoke(app, ["build", "--target", "linux-x86_64-ort", "--recipe", "onnx-cpu-8da4w-g64",
                                "--max-seq-len", "256", "--out", str(out)])
    assert built.exit_code == 0, built.output
    assert "onnx-cpu-8da4w-g64 for linux-x86_64-ort" in built.stdout
    checked = runner.invoke(app, ["check", str(out), "--out", str(tmp_path / "r"), "--repeats", "2",
                                  "--decode-tokens", "16", "--max-kld", "1e-9"])
    assert checked.exit_code == 3 and "kld_mean <= 1e-09" in checked.stderr
    report = read_report(tmp_path / "r")
    assert report.bundle.recipe.exporter == "optimum-onnx" and set(report.runners) == {"onnxruntime"}
    assert report.summary.same_top1_pct >= 90.0 and not report.passed


def test_onnx_recipes_are_refused_where_they_cannot_run(tmp_path):
    runner = CliRunner()
    wrong_runtime = runner.invoke(app, ["build", "--recipe", "ortgenai-cpu-8da4w-g32", "--dry-run", "--out", str(tmp_path / "x")])
    assert wrong_runtime.exit_code == 2 and "builds for onnxruntime, but target linux-x86_64-xnnpack runs executorch" in wrong_runtime.stderr
    odd_blocks = runner.invoke(app, ["build", "--target", "linux-x86_64-ort", "--recipe", "onnx-cpu-4w-g128-rtn",
                                     "--out", str(tmp_path / "y")])
    assert odd_blocks.exit_code == 2 and "fails on an odd number of blocks" in odd_blocks.stderr
    assert "(16, 32, 64)" in odd_blocks.stderr and not (tmp_path / "y").exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_an_onnx_recipe_refuses_a_tokenizer_onnxruntime_genai_cannot_read(default_checkpoint, tmp_path):
    """Checked at load, before any export: a ConfigError (exit 2) naming the file and what to put there. A
    llama2.c tokenizer.bin has no converter; sentencepiece and tiktoken files are converted
    (tests/compile/test_tokenizer_convert.py)."""
    import dataclasses

    from llamaport.compile.checkpoint import TokenizerFile
    from llamaport.compile.exporters.hf_folder_out import check_onnx_tokenizer, write_hf_folder
    from llamaport.errors import ConfigError

    check_onnx_tokenizer(default_checkpoint)
    bin_ = dataclasses.replace(default_checkpoint, tokenizer=TokenizerFile("llama2c", tmp_path / "tokenizer.bin"))
    with pytest.raises(ConfigError, match=r"tokenizer.bin: ONNX bundles need a Hugging Face tokenizer.json; llamaport "
                                          r"converts sentencepiece and tiktoken tokenizer.model files, not a llama2c"):
        write_hf_folder(bin_, tmp_path / "hf", 256)
    assert not (tmp_path / "hf").exists()
