"""Command lines refused before anything is read or built, across every command: one line, exit 2. Usage errors
(typer's) are held to the same line as llamaport's own refusals."""

from __future__ import annotations

import shutil

import pytest

from llamaport.compile.pipeline import DEFAULT_MODEL
from tests.bad_inputs.contract import assert_refused, invoke

# name: (argv, {tmp} replaced by the test's folder; what the one line must name)
CASES = {
    # usage errors: typer's parser, one line instead of its five-line box
    "compare without a report": (["compare"], ("llamaport compare: Missing argument 'reports'", "See `llamaport compare --help`")),
    "an unknown command": (["nosuch"], ("llamaport: No such command 'nosuch'",)),
    "an unknown option": (["build", "--nosuch"], ("llamaport build: No such option: --nosuch",)),
    "decode tokens 0": (["check", "--decode-tokens", "0", "{tmp}/empty"], ("Invalid value for '--decode-tokens'",)),
    "context as text": (["build", "--max-seq-len", "abc"], ("Invalid value for '--max-seq-len'",)),
    "farm run, unknown option": (["farm", "run", "--nosuch"], ("llamaport farm run: No such option: --nosuch",)),
    "farm max attempts 0": (["farm", "run", "--max-attempts", "0", "{tmp}/empty"], ("Invalid value for '--max-attempts'",)),
    # build's files and options
    "eval text missing": (["build", "--eval-text", "{tmp}/missing.txt"], ("--eval-text", "missing.txt: no such file",)),
    "eval text empty": (["build", "--eval-text", "{tmp}/empty.txt"], ("empty.txt: eval text is empty",)),
    "eval text too short": (["build", "--eval-text", "{tmp}/short.txt"], ("short.txt: eval text or context (512) too short",)),
    "eval text not UTF-8": (["build", "--eval-text", "{tmp}/latin.txt"], ("latin.txt: cannot read eval text",)),
    "calibration text missing": (["build", "--recipe", "et-xnnpack-8da4w-g128-gptq", "--calibration-text", "{tmp}/missing.txt"],
                                 ("--calibration-text", "missing.txt: no such file")),
    "calibration text empty": (["build", "--recipe", "et-xnnpack-8da4w-g128-gptq", "--calibration-text", "{tmp}/empty.txt"],
                               ("empty.txt: calibration text gives 0 windows of 64 tokens",)),
    "calibration text for a rounding recipe": (["build", "--calibration-text", "{tmp}/short.txt"],
                                               ("recipe et-xnnpack-8da4w-g32 is not calibrated",)),
    "plan file missing": (["build", "--config", "{tmp}/missing.json"], ("missing.json: cannot read a build plan",)),
    "plan file not JSON": (["build", "--config", "{tmp}/bad.json"], ("bad.json: cannot read a build plan",)),
    "plan file without ids": (["build", "--config", "{tmp}/plan.json"], ("plan.json: not a build plan (needs 'recipe' and 'target' ids)",)),
    "plan file a folder": (["build", "--config", "{tmp}/empty"], ("empty: cannot read a build plan",)),
    "context above the model's": (["build", "--max-seq-len", "100000"], ("--max-seq-len 100000 exceeds the model's max_position_embeddings 512",)),
    "targets file not TOML": (["build", "--targets-file", "{tmp}/bad.toml"], ("bad.toml: not valid TOML",)),
    "targets file missing": (["build", "--targets-file", "{tmp}/missing.toml"], ("missing.toml: targets file not found",)),
    "target missing its keys": (["build", "--targets-file", "{tmp}/partial.toml", "--target", "x"],
                                ("partial.toml: target #1 (x): missing keys ['arch', 'backends'",)),
    "recipe of another runtime": (["build", "--recipe", "ortgenai-cpu-8da4w-g32", "--target", "linux-x86_64-xnnpack"],
                                  ("recipe ortgenai-cpu-8da4w-g32 builds for onnxruntime, but target linux-x86_64-xnnpack runs executorch",)),
    "group size 0": (["build", "--recipe", "et-xnnpack-8da4w-g0"], ("unknown recipe 'et-xnnpack-8da4w-g0'",)),
    "an embedding of 5 bits": (["build", "--recipe", "et-xnnpack-8da4w-g32-emb5"], ("unknown recipe 'et-xnnpack-8da4w-g32-emb5'",)),
    "out is the model": (["build", "{tmp}/m", "--out", "{tmp}/m", "--overwrite"], ("--out", "is the model", "write the output somewhere else")),
    "out inside the model": (["build", "{tmp}/m", "--out", "{tmp}/m/bundle"], ("is inside the model",)),
    "out holding the model": (["build", "{tmp}/m", "--out", "{tmp}", "--overwrite"], ("holds the model",)),
    "overwrite of a folder that is not a bundle": (["build", "--out", "{tmp}/notes", "--overwrite"],
                                                   ("holds files but no manifest.json, so it is not a bundle --overwrite may replace",)),
    "out a file": (["build", "--out", "{tmp}/afile"], ("--out", "afile: is a file",)),
    "model a plain file": (["build", "{tmp}/afile"], ("afile: not a checkpoint llamaport reads",)),
    "model an empty folder": (["build", "{tmp}/empty"], ("empty: not a checkpoint llamaport reads",)),
    # check, compare, generate: before any runtime starts
    "check of a file": (["check", "{tmp}/afile"], ("afile: not a bundle (manifest.json missing)",)),
    "check with a missing baseline model": (["check", "{tmp}/empty", "--baseline-model", "{tmp}/missing"], ("missing: no such file or folder",)),
    "check with a missing inventory": (["check", "{tmp}/empty", "--inventory", "{tmp}/missing.toml", "--device", "b"],
                                       ("missing.toml: inventory file not found",)),
    "compare of a missing file": (["compare", "{tmp}/missing.json"], ("missing.json: cannot read the report file",)),
    "compare of a file that is not JSON": (["compare", "{tmp}/bad.json"], ("bad.json: cannot read the report file",)),
    "compare of a future report": (["compare", "{tmp}/future.json"], ("future.json: report schema_version 99; this llamaport reads report schema",)),
    "compare of a folder without a report": (["compare", "{tmp}/empty"], ("report.json: cannot read the report file",)),
    "generate from a folder that is not a bundle": (["generate", "{tmp}/empty", "hello"], ("empty: not a bundle (manifest.json missing)",)),
    # sweep and tune: before the first build
    "sweep of one recipe twice": (["sweep", "--recipe", "et-xnnpack-8w", "--recipe", "et-xnnpack-8w"],
                                  ("--recipe et-xnnpack-8w given more than once",)),
    "sweep of another runtime's recipe": (["sweep", "--recipe", "ortgenai-cpu-fp32"], ("recipe ortgenai-cpu-fp32 builds for onnxruntime",)),
    "sweep context 5": (["sweep", "--max-seq-len", "5"], ("--max-seq-len 5 is too short; use at least 32",)),
    "sweep of a missing model": (["sweep", "{tmp}/missing"], ("missing: no such file or folder",)),
    "sweep out a file": (["sweep", "--out", "{tmp}/afile"], ("--out", "afile: is a file")),
    "sweep with a percentage over 100": (["sweep", "--min-top1", "150"], ("--min-top1 150: gate 'same_top1_pct': 150.0 is not a percentage",)),
    "tune max builds 0": (["tune", "--max-builds", "0"], ("--max-builds must be at least 1, got 0",)),
    "tune of an unknown recipe": (["tune", "--recipe", "nosuch"], ("unknown recipe 'nosuch'",)),
    "tune context 8": (["tune", "--max-seq-len", "8"], ("--max-seq-len 8 is too short",)),
    "tune of one recipe twice": (["tune", "--recipe", "et-xnnpack-8w", "--recipe", "et-xnnpack-8w"], ("given more than once",)),
    # farm: inventories, stores, report folders
    "inventory not TOML": (["farm", "run", "--inventory", "{tmp}/inv_bad.toml", "--device", "b", "{tmp}/empty"],
                           ("inv_bad.toml: not valid TOML",)),
    "inventory device without a target": (["farm", "run", "--inventory", "{tmp}/inv_transport.toml", "--device", "b", "{tmp}/empty"],
                                          ("inv_transport.toml: device #1 (b): missing keys ['target']",)),
    "inventory ssh device without an address": (["farm", "run", "--inventory", "{tmp}/inv_nohost.toml", "--device", "b", "{tmp}/empty"],
                                                ("transport ssh needs an 'address'",)),
    "inventory with one id twice": (["farm", "run", "--inventory", "{tmp}/inv_dup.toml", "--device", "b", "{tmp}/empty"],
                                    ("device ids must be unique; repeated: ['b']",)),
    "farm run without devices or targets": (["farm", "run", "{tmp}/empty"], ("name the devices (--device) or the targets (--target)",)),
    "results store that is a folder": (["farm", "results", "--db", "sqlite:///{tmp}/empty"], ("cannot open the results store",)),
    "results store that is not a URL": (["farm", "results", "--db", "nonsense"], ("'nonsense' is not a database URL",)),
    "farm report into a file": (["farm", "report", "--db", "sqlite:///{tmp}/new.db", "--out", "{tmp}/afile"], ("--out", "afile: is a file")),
    "farm report over another folder": (["farm", "report", "--db", "sqlite:///{tmp}/new.db", "--out", "{tmp}/notes"],
                                        ("notes: exists and is not an earlier report (farm.html missing)",)),
    "farm agent with a missing inventory": (["farm", "agent", "--inventory", "{tmp}/missing.toml"], ("missing.toml: inventory file not found",)),
    "targets of a partial file": (["targets", "--targets-file", "{tmp}/partial.toml"], ("partial.toml: target #1 (x): missing keys",)),
    "recipes of an unknown target": (["recipes", "--target", "nosuch"], ("unknown target 'nosuch'",)),
}

FILES = {"afile": "x", "empty.txt": "", "short.txt": "hi\n", "bad.json": "{nope", "plan.json": '{"model": "x", "nosuchkey": 1}',
         "bad.toml": "[[target", "partial.toml": '[[target]]\nname = "x"\n', "future.json": '{"schema_version": 99}',
         "inv_transport.toml": '[[device]]\nid = "b"\ntransport = "telnet"\n',
         "inv_nohost.toml": '[[device]]\nid = "b"\ntransport = "ssh"\ntarget = "linux-x86_64-xnnpack"\n',
         "inv_bad.toml": "[[device]\n", "notes/keep.txt": "mine",
         "inv_dup.toml": '[[device]]\nid = "b"\ntransport = "local"\ntarget = "linux-x86_64-xnnpack"\n' * 2}


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "latin.txt").write_bytes(b"\xff\xfe\x00bad")
    shutil.copytree(DEFAULT_MODEL, tmp_path / "m")
    return tmp_path


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_command_line_is_refused_in_one_line(case, folder):
    argv, needles = CASES[case]
    if argv[0] in ("build", "sweep", "tune") and "--out" not in argv:
        argv = [*argv, "--out", "{tmp}/out"]
    assert_refused(invoke(argv, folder), folder / "out", *needles)
    assert (folder / "m" / "model.safetensors").is_file() and (folder / "notes" / "keep.txt").read_text() == "mine"
