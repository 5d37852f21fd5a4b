"""Longer end-to-end builds: `make test-slow` (pytest -m slow)."""

import pytest
from typer.testing import CliRunner

from compile.cli import app

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("fmt", ["llama2c-v1", "llama2c-pt"])
def test_fp32_bundle_of_other_llama2c_layouts_matches_full_model(fmt, sources, bundle):
    acc = bundle(sources[fmt], "et-xnnpack-fp32").accuracy
    assert acc["greedy_identical"] and acc["same_top1_pct"] == 100.0


def test_random_llama32_shaped_model_with_tied_embeddings_and_rope_scaling(tiny_random_hf, bundle):
    """Random weights: top-1 is fragile, but fp32 must still match the full model to rounding."""
    acc = bundle(tiny_random_hf, "et-xnnpack-fp32").accuracy
    assert acc["kld_mean"] < 1e-6 and acc["max_abs_logit_error"] < 1e-3


def test_gate_not_met_exits_3_with_a_table_and_writes_nothing(tmp_path, tiny_random_hf):
    targets = tmp_path / "t.toml"
    targets.write_text('[[target]]\nname = "strict-cpu"\nos = "linux"\narch = "x86_64"\nruntime = "executorch"\n'
                       'backends = ["xnnpack"]\nlinear_schemes = ["fp32", "8da4w"]\nmemory_budget_mb = 1024\n'
                       'default_context_len = 128\ngates = [{metric = "ppl_ratio", max = 0.5}]\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["build", str(tiny_random_hf), "--recipe", "et-xnnpack-fp32",
                                      "--target", "strict-cpu", "--targets-file", str(targets), "--out", str(out)])
    assert result.exit_code == 3, result.output
    assert "misses the target's accuracy floor" in result.stderr
    assert "ppl_ratio <= 0.5" in result.stderr and "missed by" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.partial-*"))
