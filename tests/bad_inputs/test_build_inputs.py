"""Bad input: one line naming the file or field, exit 2, and no output folder (not even a partial one)."""

import json
import os
import pickle
import shutil

import pytest
import torch
from typer.testing import CliRunner

from llamaport.cli import app
from llamaport.compile.pipeline import DEFAULT_MODEL
from tests import source_writers

runner = CliRunner()


def _build(tmp_path, *args):
    out = tmp_path / "out"
    result = runner.invoke(app, ["build", *map(str, args), "--out", str(out)])
    return result, out


def assert_refused(result, out, *needles):
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert message.startswith("error: ")
    for needle in needles:
        assert needle in message, message
    assert not out.exists()
    assert not list(out.parent.glob(".out.partial-*"))


@pytest.fixture
def hf_copy(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL, folder)
    return folder


def test_truncated_safetensors(tmp_path, hf_copy):
    weights = hf_copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    assert_refused(*_build(tmp_path, hf_copy), "model.safetensors", "truncated")


def test_non_llama_config(tmp_path, hf_copy):
    config = json.loads((hf_copy / "config.json").read_text())
    config.update(architectures=["GPT2LMHeadModel"], model_type="gpt2")
    (hf_copy / "config.json").write_text(json.dumps(config))
    assert_refused(*_build(tmp_path, hf_copy), "config.json", "GPT2LMHeadModel", "supported: LlamaForCausalLM")


def test_missing_tokenizer(tmp_path, hf_copy):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (hf_copy / name).unlink()
    assert_refused(*_build(tmp_path, hf_copy), "no tokenizer found", "tokenizer.json")


def test_unknown_recipe(tmp_path):
    assert_refused(*_build(tmp_path, "--recipe", "et-xnnpack-3w"), "unknown recipe 'et-xnnpack-3w'", "et-xnnpack-8da4w-g32")


def test_unknown_target(tmp_path):
    assert_refused(*_build(tmp_path, "--target", "pixel-9000"), "unknown target 'pixel-9000'", "android-arm64-xnnpack")


def test_llama2c_wrong_header(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\xff" * 4096)
    assert_refused(*_build(tmp_path, path), "model.bin", "not a llama2.c model")


def test_llama2c_wrong_size(tmp_path, default_checkpoint):
    path = source_writers.write_llama2c_bin(default_checkpoint, tmp_path / "l2c", version=1)
    path.write_bytes(path.read_bytes()[:-100])
    assert_refused(*_build(tmp_path, path), "model.bin", "bytes, but its header")


class _Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_pth_with_code_payload_is_never_run(writer, tmp_path, default_checkpoint):
    folder = source_writers.write_meta_folder(default_checkpoint, tmp_path / "meta")
    marker = tmp_path / "payload_ran"
    payload = {"tok_embeddings.weight": _Payload(marker)}
    if writer == "torch.save":
        torch.save(payload, folder / "consolidated.00.pth")
    else:
        with open(folder / "consolidated.00.pth", "wb") as f:
            pickle.dump(payload, f)
    assert_refused(*_build(tmp_path, folder), "consolidated.00.pth", "refused to unpickle")
    assert not marker.exists()


def test_embedding_group_that_does_not_divide_its_rows_is_refused_not_changed(tmp_path):
    """Linears of any width are padded to whole groups; an embedding table cannot be: refused, by name."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path / "hidden48"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=48, intermediate_size=96, num_hidden_layers=1,
                                 num_attention_heads=4, num_key_value_heads=2, bos_token_id=1, eos_token_id=2)
                     ).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(DEFAULT_MODEL / name, folder / name)
    result, out = _build(tmp_path, folder, "--recipe", "et-xnnpack-8da4w-g32-emb4g32")
    assert_refused(result, out, "the embedding has rows of width 48, not a multiple of group size 32")


def test_weights_that_do_not_match_the_config(tmp_path, hf_copy):
    config = json.loads((hf_copy / "config.json").read_text())
    config["intermediate_size"] = 256
    (hf_copy / "config.json").write_text(json.dumps(config))
    assert_refused(*_build(tmp_path, hf_copy), "mlp.gate_proj.weight has shape (384, 128), the config implies (256, 128)")


def test_scheme_the_target_cannot_run_is_refused_before_loading(tmp_path):
    targets = tmp_path / "targets.toml"
    targets.write_text('[[target]]\nname = "mcu-fp32-only"\nos = "none"\narch = "armv8m"\nruntime = "executorch"\n'
                       'backends = ["xnnpack", "portable"]\nlinear_schemes = ["fp32"]\nmemory_budget_mb = 8\n'
                       'default_context_len = 128\n')
    missing_model = tmp_path / "never-read"
    missing_model.mkdir()
    result, out = _build(tmp_path, missing_model, "--target", "mcu-fp32-only", "--targets-file", targets)
    assert_refused(result, out, "mcu-fp32-only cannot run ['8da4w']")


def test_existing_output_is_not_overwritten_without_flag(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["build", "--out", str(out)])
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"


def test_dry_run_resolves_without_reading_weights(tmp_path):
    result = runner.invoke(app, ["build", "--dry-run", "--json", "--recipe", "et-xnnpack-8w", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["recipe"] == "et-xnnpack-8w" and plan["source_format"] == "hf"
    assert plan["target"] == "linux-x86_64-xnnpack" and plan["recipe_fields"]["scheme"]["id"] == "8w"
    assert not (tmp_path / "o").exists()


def test_check_refuses_a_folder_that_is_not_a_bundle(tmp_path):
    result = runner.invoke(app, ["check", str(tmp_path), "--out", str(tmp_path / "out")])
    assert_refused(result, tmp_path / "out", str(tmp_path), "manifest.json missing")


def test_check_refuses_an_unknown_device(tmp_path):
    result = runner.invoke(app, ["check", str(tmp_path), "--device", "pixel9", "--out", str(tmp_path / "out")])
    assert_refused(result, tmp_path / "out", "unknown device 'pixel9'; valid: local")


def test_compare_refuses_a_file_that_is_not_a_report(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    result = runner.invoke(app, ["compare", str(tmp_path / "x.json"), "--out", str(tmp_path / "out")])
    assert_refused(result, tmp_path / "out", "x.json", "report schema")


@pytest.mark.parametrize("line, needles", [
    ('backends = "xnnpack"', ("t.toml: target #1 (mine): field 'backends' must be a list, got 'xnnpack'",)),
    ('backends = ["xnnpack", "portable"]\nlinear_schemes = ["fp32", "4w"]',
     ("t.toml: target #1 (mine)", "cannot enable 4w on xnnpack, a known issue", "executorch 1.5.1")),
])
def test_a_targets_file_of_the_wrong_type_or_re_enabling_a_known_miscompile_exits_2(tmp_path, line, needles):
    targets = tmp_path / "t.toml"
    targets.write_text('[[target]]\nname = "mine"\nos = "linux"\narch = "arm64"\nruntime = "executorch"\n'
                       f'memory_budget_mb = 4096\ndefault_context_len = 512\n{line}\n')
    for args in (["targets", "--targets-file", str(targets)],
                 ["build", "--dry-run", "--target", "mine", "--targets-file", str(targets), "--out", str(tmp_path / "out")]):
        assert_refused(runner.invoke(app, args), tmp_path / "out", *needles)


def test_an_empty_recipe_and_a_zero_context_are_refused_not_replaced(tmp_path):
    assert_refused(*_build(tmp_path, "--recipe", ""), "--recipe is empty")
    assert_refused(*_build(tmp_path, "--max-seq-len", "0"), "--max-seq-len 0 is too short")


@pytest.mark.parametrize("args, needles", [
    (["farm", "run"], ("farm run: give at least one bundle folder",)),
    (["farm", "run", "--resume", "nosuchrun"], ("--resume nosuchrun: no such run",)),
    (["farm", "results", "--db", "mysql://x@y/z"], ("unsupported database 'mysql'",)),
    (["farm", "run", "--inventory", "{tmp}/missing.toml", "--device", "a", "{tmp}"], ("missing.toml: inventory file not found",)),
])
def test_farm_bad_inputs_are_refused_in_one_line(tmp_path, args, needles):
    db = ["--db", f"sqlite:///{tmp_path / 'farm.sqlite'}"] if "--db" not in args else []
    result = runner.invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in args] + db)
    assert_refused(result, tmp_path / "out", *needles)


def test_bos_and_eos_ids_outside_the_tokenizer_are_refused(tmp_path, hf_copy):
    config = json.loads((hf_copy / "config.json").read_text())
    config.update(bos_token_id=128000, eos_token_id=128001)
    (hf_copy / "config.json").write_text(json.dumps(config))
    assert_refused(*_build(tmp_path, hf_copy), "bos_token_id 128000 is outside the tokenizer's vocabulary",
                   "512 tokens in tokenizer.json")


def _write(path, text, encoding="utf-8"):
    path.write_text(text, encoding=encoding)


# Each: how to spoil a copy of the bundled model (or the command line), and what the one line must name.
# Found by trying bad inputs as a new user would (issue 14); each was a traceback, a raw Python error or an
# out-of-memory kill before.
SPOILED = {
    "config.json in UTF-16": (lambda m, t: _write(m / "config.json", (m / "config.json").read_text(), "utf-16"),
                              ["{model}"], ("config.json: not UTF-8 text",)),
    "config.json a JSON list": (lambda m, t: _write(m / "config.json", "[1, 2]"), ["{model}"],
                                ("config.json: a JSON list where a JSON object is expected",)),
    "index without weight_map": (lambda m, t: _write(m / "model.safetensors.index.json", '{"metadata": {}}'), ["{model}"],
                                 ("model.safetensors.index.json: needs a \"weight_map\"",)),
    "index naming a missing shard": (lambda m, t: _write(m / "model.safetensors.index.json",
                                                         '{"weight_map": {"lm_head.weight": "model-00002.safetensors"}}'),
                                     ["{model}"], ("names model-00002.safetensors", "fetch the missing shards")),
    "added_tokens not a list": (lambda m, t: _write(m / "tokenizer.json", json.dumps(
        {**json.loads((m / "tokenizer.json").read_text()), "added_tokens": {"a": 1}})), ["{model}"],
        ("tokenizer.json: ExecuTorch's tokenizer cannot read it",)),
    "--out under a file": (lambda m, t: _write(t / "afile", "x"), ["--out", "{tmp}/afile/bundle"],
                           ("afile is a file, not a folder",)),
    "--out name over the limit": (lambda m, t: None, ["--out", "{tmp}/" + "a" * 300],
                                  ("longer than the file system allows (255)",)),
    "--eval-text a folder": (lambda m, t: None, ["--eval-text", "{tmp}"], ("--eval-text", "is a folder")),
    "--targets-file a folder": (lambda m, t: None, ["--targets-file", "{tmp}"], ("is a folder", "[[target]] tables")),
}


@pytest.mark.parametrize("case", sorted(SPOILED))
def test_spoiled_inputs_are_refused_in_one_line_before_anything_is_built(case, tmp_path, hf_copy):
    spoil, args, needles = SPOILED[case]
    spoil(hf_copy, tmp_path)
    args = [a.replace("{model}", str(hf_copy)).replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    result = runner.invoke(app, ["build", *args])
    assert_refused(result, tmp_path / "out", *needles)
    assert "Traceback" not in result.output


def test_a_llama2c_header_claiming_two_billion_layers_is_refused_by_arithmetic_not_allocation(tmp_path):
    import resource
    import struct

    path = tmp_path / "bomb.bin"
    path.write_bytes(struct.pack("<7i", 64, 128, 2**31 - 1, 4, 4, 512, 256) + bytes(200))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result, out = _build(tmp_path, path)
    assert_refused(result, out, "bomb.bin: 228 bytes, but its header (version 0) implies")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing was allocated for it


def test_a_tokenizer_whose_ids_the_embedding_has_no_rows_for_is_refused(tmp_path, hf_copy):
    from safetensors.torch import load_file, save_file

    config = json.loads((hf_copy / "config.json").read_text())
    config["vocab_size"] = 256  # the bundled 512-token tokenizer beside a 256-row embedding
    (hf_copy / "config.json").write_text(json.dumps(config))
    weights = load_file(hf_copy / "model.safetensors")
    save_file({k: v[:256].clone() if v.shape[0] == 512 else v for k, v in weights.items()}, hf_copy / "model.safetensors")
    assert_refused(*_build(tmp_path, hf_copy), "tokenizer.json: encodes the eval text to id", "the embedding has 256 rows")


# Command-line cases refused before anything is read: (argv with {tmp}, what the one line must name).
COMMAND_LINES = {
    "check of an empty folder": (["check", "{tmp}/empty"], ("not a bundle (manifest.json missing)",)),
    "check of an unknown device": (["check", "--device", "nosuch", "{tmp}/empty"], ("unknown device 'nosuch'",)),
    "compare of a report missing its keys": (["compare", "{tmp}/partial.json"], ("partial.json: missing keys",)),
    "sweep of an unknown recipe": (["sweep", "--recipe", "nosuch", "--out", "{tmp}/out"], ("unknown recipe 'nosuch'",)),
    "tune of an unknown target": (["tune", "--target", "nosuch", "--out", "{tmp}/out"], ("unknown target 'nosuch'",)),
    "zero calibration samples": (["build", "--recipe", "et-xnnpack-8da4w-g128-gptq", "--calibration-samples", "0",
                                  "--out", "{tmp}/out"], ("--calibration-samples must be at least 1, got 0",)),
    "negative context": (["build", "--max-seq-len", "-5", "--out", "{tmp}/out"], ("--max-seq-len -5 is too short",)),
    "model path that does not exist": (["build", "{tmp}/nosuchmodel", "--out", "{tmp}/out"],
                                       ("nosuchmodel: no such file or folder",)),
    "farm store under a file": (["farm", "results", "--db", "sqlite:///{tmp}/afile/x.db"], ("a file is in the way",)),
}


@pytest.mark.parametrize("case", sorted(COMMAND_LINES))
def test_bad_command_lines_are_refused_in_one_line(case, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("x")
    (tmp_path / "partial.json").write_text('{"schema_version": 3}')
    argv, needles = COMMAND_LINES[case]
    result = runner.invoke(app, [a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert_refused(result, tmp_path / "out", *needles)
    assert "Traceback" not in result.output
