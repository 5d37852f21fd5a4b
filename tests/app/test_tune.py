"""`llamaport tune`: eager proxies prune, survivors are built and checked, winners are written as build
plans that rebuild the same bytes, and the Pareto plot is drawn from the measured bundles."""

from __future__ import annotations

import hashlib
import json

import pytest
from typer.testing import CliRunner

from llamaport.cli import app

CANDIDATES = ("ortgenai-cpu-8da4w-g32", "ortgenai-cpu-8da4w-g32-gptq", "ortgenai-cpu-8da4w-g128-gptq-keep8x2",
              "ortgenai-cpu-4w-g128")


def _digest(folder):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir()) if f.name.startswith("model.onnx")}


# slow: 78 s (a tune that builds its front twice) on CI's 2 cores
@pytest.mark.slow
def test_tune_prunes_by_proxy_builds_the_front_and_its_winner_rebuilds_byte_for_byte(tmp_path):
    runner = CliRunner()
    out = tmp_path / "tune"
    args = ["tune", "--target", "linux-x86_64-ort", "--out", str(out), "--max-builds", "2", "--repeats", "1",
            "--decode-tokens", "16", *(a for r in CANDIDATES for a in ("-r", r))]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    tune = json.loads((out / "tune.json").read_text())
    candidates = {c["recipe"]: c for c in tune["candidates"]}
    assert set(candidates) == set(CANDIDATES)
    alive = [c for c in candidates.values() if not c["status"].startswith("pruned: proxy")]
    for c in alive:  # the rule: built or over the budget only when no other survivor is smaller with lower KLD
        beaten = any(o["weight_bytes"] <= c["weight_bytes"] and o["proxy_kld"] <= c["proxy_kld"] and
                     (o["weight_bytes"] < c["weight_bytes"] or o["proxy_kld"] < c["proxy_kld"]) for o in alive if o is not c)
        assert (c["status"] == "pruned: dominated") == beaten, c
    built = [r for r, c in candidates.items() if c["status"] == "built"]
    assert 1 <= len(built) <= 2
    assert candidates["ortgenai-cpu-8da4w-g128-gptq-keep8x2"]["units_at_8_bits"]
    sweep = json.loads((out / "sweep" / "sweep.json").read_text())
    assert sorted(e["recipe"] for e in sweep["recipes"]) == sorted(built)
    png = (out / "pareto.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert tune["fastest_passing"] in built and tune["smallest_passing"] in built
    assert "fastest passing:" in result.output and "rebuild the fastest: llamaport build --config" in result.output

    plan = json.loads((out / "fastest.json").read_text())
    assert plan["recipe"] == tune["fastest_passing"] and plan["target"] == "linux-x86_64-ort"
    rebuilt = tmp_path / "rebuilt"
    again = runner.invoke(app, ["build", "--config", str(out / "fastest.json"), "--out", str(rebuilt)])
    assert again.exit_code == 0, again.output
    original = out / "sweep" / "bundles" / tune["fastest_passing"] / "model"
    assert _digest(rebuilt / "model") == _digest(original) and _digest(original)


def test_tune_refuses_a_candidate_the_target_cannot_run(tmp_path):
    result = CliRunner().invoke(app, ["tune", "--target", "linux-x86_64-ort", "--out", str(tmp_path / "t"),
                                      "-r", "et-xnnpack-8da4w-g32"])
    assert result.exit_code == 2
    assert "builds for executorch" in result.stderr and not (tmp_path / "t").exists()


def test_tune_refuses_a_candidate_whose_rounding_the_proxy_cannot_reproduce(tmp_path):
    result = CliRunner().invoke(app, ["tune", "--target", "linux-x86_64-ort", "--out", str(tmp_path / "t"),
                                      "-r", "onnx-cpu-4w-g32-hqq"])
    assert result.exit_code == 2
    assert "cannot reproduce onnxruntime's own hqq rounding" in result.stderr and not (tmp_path / "t").exists()
