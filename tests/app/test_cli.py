"""The CLI's conventions: --version, python -m, --json, completion, save-and-replay plans, exit codes, help
text, and `generate` from every layout. CLI tests assert what the command passed on to the API."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from llamaport import api
from llamaport.cli import app
from llamaport.compile.pipeline import DEFAULT_MODEL
from llamaport.errors import ConfigError
from tests.compile.test_literal_golden import NEW_TOKENS, expected

runner = CliRunner()


def test_version_and_python_dash_m(tmp_path):
    assert runner.invoke(app, ["--version"]).stdout.strip() == "llamaport 0.1.0"
    out = subprocess.run([sys.executable, "-m", "llamaport", "--version"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "llamaport 0.1.0"


def test_help_keeps_its_text_and_names_the_exit_codes():
    def words(args):  # rich wraps the text to the terminal: compare it unwrapped, without the box
        return " ".join(runner.invoke(app, args).stdout.replace("│", " ").split())
    build = words(["build", "--help"])
    assert "TOML file of extra [[target]] profiles" in build and "--config" in build and "--dry-run" in build
    top = words(["--help"])
    assert "4 the device could not run the check" in top and "--install-completion" in top


def test_recipe_and_target_ids_complete():
    from llamaport.common_cli import _complete_recipe, _complete_target

    assert set(_complete_recipe("et-xnnpack-8da4w-g32-e")) == {"et-xnnpack-8da4w-g32-emb4g32", "et-xnnpack-8da4w-g32-emb8",
                                                             "et-xnnpack-8da4w-g32-emb4g32-kv8"}
    calibrated = _complete_recipe("et-xnnpack-8da4w-g128-")
    assert {"et-xnnpack-8da4w-g128-gptq", "et-xnnpack-8da4w-g128-gptq-keep8x2", "et-xnnpack-8da4w-g128-emb4g32"} <= set(calibrated)
    assert all(r.startswith("et-xnnpack-8da4w-g128-") for r in calibrated)
    assert _complete_target("android") == ["android-arm64-xnnpack", "android-arm64-ort", "android-arm64-vulkan",
                                           "android-arm64-qnn"]
    env = {"_LLAMAPORT_COMPLETE": "complete_bash", "COMP_WORDS": "llamaport build --recipe ortgenai-cpu-8da4w-g128-gptq-keep8x",
           "COMP_CWORD": "3"}
    out = subprocess.run([sys.executable, "-m", "llamaport"], env={**__import__("os").environ, **env},
                         capture_output=True, text=True)
    assert out.stdout.split() == [f"ortgenai-cpu-8da4w-g128-gptq-keep8x{n}" for n in (1, 2, 4, 8)], out.stdout + out.stderr


def test_recipes_and_targets_print_json_and_filter_by_target():
    recipes = json.loads(runner.invoke(app, ["recipes", "--json", "--target", "linux-x86_64-ort"]).stdout)
    assert recipes and all(r["id"].startswith(("ortgenai-cpu-", "onnx-cpu-")) for r in recipes)
    targets = json.loads(runner.invoke(app, ["targets", "--json"]).stdout)
    assert {t["name"] for t in targets} >= {"linux-x86_64-xnnpack", "android-arm64-ort"}


def test_a_dry_run_plan_replays_with_config_and_options_override_it(tmp_path, monkeypatch):
    saved = runner.invoke(app, ["build", "--dry-run", "--json", "--target", "linux-x86_64-ort", "--recipe",
                                "onnx-cpu-8da8w", "--max-seq-len", "128", "--out", str(tmp_path / "b")])
    assert saved.exit_code == 0, saved.output
    plan = tmp_path / "plan.json"
    plan.write_text(saved.stdout)
    replayed = runner.invoke(app, ["build", "--config", str(plan), "--dry-run", "--json"])
    assert json.loads(replayed.stdout) == json.loads(saved.stdout)
    passed = {}

    def fake_build(**kwargs):
        passed.update(kwargs)
        raise ConfigError("stop here")
    monkeypatch.setattr(api, "build", fake_build)
    result = runner.invoke(app, ["build", "--config", str(plan), "--out", str(tmp_path / "other")])
    assert result.exit_code == 2 and "stop here" in result.stderr
    assert passed == {"model": str(DEFAULT_MODEL), "recipe": "onnx-cpu-8da8w", "target": "linux-x86_64-ort",
                      "targets_file": None, "out": str(tmp_path / "other"), "max_seq_len": 128, "eval_text": None,
                      "overwrite": False, "progress": passed["progress"], "calibration_text": None,
                      "calibration_samples": None}
    bad = tmp_path / "bad.json"
    bad.write_text('{"recipe": 3}')
    refused = runner.invoke(app, ["build", "--config", str(bad), "--dry-run"])
    assert refused.exit_code == 2 and "bad.json: not a build plan" in refused.stderr


def test_build_json_prints_the_manifest(bundle, monkeypatch):
    built = bundle(DEFAULT_MODEL, "et-xnnpack-fp32")
    monkeypatch.setattr(api, "build", lambda **kwargs: built)
    result = runner.invoke(app, ["build", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == built.manifest.to_dict()


def test_a_device_that_cannot_run_the_check_exits_4(bundle, monkeypatch, tmp_path):
    from llamaport.targets.transports.base import RunResult
    from llamaport.targets.transports.local import LocalTransport

    monkeypatch.setattr(LocalTransport, "run", lambda self, argv, timeout_s: RunResult(139, "", "device lost"))
    result = runner.invoke(app, ["check", str(bundle(DEFAULT_MODEL, "et-xnnpack-fp32").bundle), "--out", str(tmp_path / "r")])
    assert result.exit_code == 4 and "device local" in result.stderr, result.stderr
    assert not (tmp_path / "r").exists()


def test_a_build_above_the_targets_memory_budget_is_refused_with_the_estimate(tmp_path):
    targets = tmp_path / "t.toml"
    targets.write_text('[[target]]\nname = "tiny-board"\nos = "linux"\narch = "arm64"\nruntime = "executorch"\n'
                       'backends = ["xnnpack", "portable"]\nmemory_budget_mb = 1\ndefault_context_len = 256\n')
    result = runner.invoke(app, ["build", "--target", "tiny-board", "--targets-file", str(targets), "--recipe",
                                 "et-xnnpack-fp32", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "memory_budget_mb 1 is below the estimated runtime memory" in result.stderr
    from llamaport.compile.sources import load_checkpoint
    from llamaport.quantize import resolve_scheme
    from llamaport.quantize.memory import estimate_runtime_memory

    estimate = estimate_runtime_memory(load_checkpoint(DEFAULT_MODEL).config, resolve_scheme("fp32"), 256)
    assert estimate.describe() in result.stderr
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))


@pytest.mark.parametrize("recipe", ["et-xnnpack-fp32", "ortgenai-cpu-fp32", "onnx-cpu-fp32"])
def test_generate_streams_the_literal_golden_from_every_layout(recipe, bundle):
    folder = bundle(DEFAULT_MODEL, recipe).bundle
    for prompt, text in expected().items():
        result = runner.invoke(app, ["generate", str(folder), prompt, "--max-new-tokens", str(NEW_TOKENS)])
        assert result.exit_code == 0, result.output
        assert result.stdout == prompt + text + "\n"
