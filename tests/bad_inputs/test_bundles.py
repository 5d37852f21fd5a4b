"""Bundles and reports spoiled one field or file at a time: `check` and `generate` refuse them in one line before
any runtime starts (the manifest is the contract; every file it lists, and every path it points a runner at,
is verified first)."""

from __future__ import annotations

import json
import shutil

import pytest

from llamaport.compile.pipeline import DEFAULT_MODEL
from tests.bad_inputs.contract import DELETE, assert_refused, invoke

RECIPE = "et-xnnpack-8da4w-g32"  # the session's default bundle, built once and shared


def _manifest(edit):
    def spoil(b):
        data = json.loads((b / "manifest.json").read_text())
        edit(data)
        (b / "manifest.json").write_text(json.dumps(data))
    return spoil


def _set(*path, value):
    def edit(data):
        for key in path[:-1]:
            data = data[key]
        data.pop(path[-1]) if value is DELETE else data.__setitem__(path[-1], value)
    return edit


def _write(name, data):
    return lambda b: (b / name).write_bytes(data) if isinstance(data, bytes) else (b / name).write_text(data)


CASES = {
    "manifest not JSON": (_write("manifest.json", "{"), ("manifest.json: cannot read the bundle file",)),
    "manifest a list": (_write("manifest.json", "[]"), ("manifest.json: not a bundle file (a JSON object was expected)",)),
    "manifest in UTF-16": (lambda b: (b / "manifest.json").write_text((b / "manifest.json").read_text(), encoding="utf-16"),
                           ("manifest.json: cannot read the bundle file",)),
    "manifest of a future schema": (_manifest(_set("schema_version", value=99)), ("bundle schema_version 99",)),
    "manifest schema as text": (_manifest(_set("schema_version", value="3")), ("bundle schema_version '3'",)),
    "manifest without runtime": (_manifest(_set("runtime", value=DELETE)), ("manifest.json: missing keys ['runtime']",)),
    "manifest runtime a list": (_manifest(_set("runtime", value=[])), ("field 'runtime' must be a table",)),
    "manifest files not a list": (_manifest(_set("files", value={})), ("field 'files' must be a list",)),
    "manifest file bytes as text": (_manifest(lambda d: d["files"][0].update(bytes="x")), ("field 'files[0].bytes' must be int",)),
    "manifest eos ids as text": (_manifest(_set("model", "eos_ids", value="2")), ("field 'model.eos_ids' must be a list",)),
    "manifest model outside the bundle": (_manifest(_set("runtime", "model", value="../../etc/passwd")),
                                          ("runtime.model '../../etc/passwd' is not one of the files the manifest lists",)),
    "manifest listing a file outside": (_manifest(lambda d: d["files"][0].update(path="/etc/hostname")),
                                        ("files[0].path '/etc/hostname' is outside the bundle",)),
    "manifest of an unknown runtime": (_manifest(_set("runtime", "runtime", value="tflite")),
                                       ("runtime 'tflite' with layout 'executorch-pte' is not one llamaport checks",)),
    "manifest of an unknown runner": (_manifest(_set("runtime", "runners", value=["mlc"])),
                                      ("runtime.runners ['mlc'] must name known runners",)),
    "model file removed": (lambda b: (b / "model/model.pte").unlink(), ("model.pte: listed in the manifest but missing",)),
    "model file modified": (lambda b: (b / "model/model.pte").write_bytes((b / "model/model.pte").read_bytes()[:-4] + b"0000"),
                            ("model.pte: differs from the manifest (bytes or sha256)",)),
    "model file truncated": (lambda b: (b / "model/model.pte").write_bytes((b / "model/model.pte").read_bytes()[:1000]),
                             ("model.pte: differs from the manifest",)),
    "golden outputs removed": (lambda b: (b / "check/golden.safetensors").unlink(), ("golden.safetensors: listed in the manifest but missing",)),
    "golden outputs garbage": (_write("check/golden.safetensors", b"garbage"), ("golden.safetensors: differs from the manifest",)),
    "tokenizer removed": (lambda b: (b / "model/tokenizer.json").unlink(), ("tokenizer.json: listed in the manifest but missing",)),
}


@pytest.fixture(scope="module")
def sound_bundle(bundle):
    return bundle(DEFAULT_MODEL, RECIPE).bundle


@pytest.mark.parametrize("command", ["check", "generate"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_spoiled_bundle_is_refused_before_any_runtime_starts(case, command, sound_bundle, tmp_path):
    spoiled = tmp_path / "bundle"
    shutil.copytree(sound_bundle, spoiled)
    spoil, needles = CASES[case]
    spoil(spoiled)
    argv = (["check", spoiled, "--out", "{tmp}/out"] if command == "check" else ["generate", spoiled, "Once", "-n", "2"])
    assert_refused(invoke(argv, tmp_path), tmp_path / "out", *needles)


REPORT_CASES = {
    "report without summary": (lambda r: r.pop("summary"), ("missing keys ['summary']",)),
    "report summary a number": (lambda r: r.update(summary=3), ("field 'summary' must be a table",)),
    "report device a list": (lambda r: r.update(device=[]), ("field 'device' must be a table",)),
    "report of a future schema": (lambda r: r.update(schema_version=99), ("report schema_version 99",)),
}


@pytest.mark.parametrize("case", sorted(REPORT_CASES))
def test_spoiled_report_is_refused_by_compare(case, checked, tmp_path):
    _, folder = checked(DEFAULT_MODEL, RECIPE)
    data = json.loads((folder / "report.json").read_text())
    spoil, needles = REPORT_CASES[case]
    spoil(data)
    (tmp_path / "report.json").write_text(json.dumps(data))
    assert_refused(invoke(["compare", "{tmp}/report.json", folder, "--out", "{tmp}/out"], tmp_path), tmp_path / "out",
                   "report.json", *needles)


def test_a_bundle_no_runner_here_runs_is_not_refused_for_naming_none(bundle, tmp_path):
    """CoreML bundles list no runners (nothing here runs them): verification accepts the empty list, refuses only
    a name it does not know."""
    from llamaport.runtime_tests.bundle_files import verify_bundle

    spoiled = tmp_path / "bundle"
    shutil.copytree(bundle(DEFAULT_MODEL, RECIPE).bundle, spoiled)
    _manifest(_set("runtime", "runners", value=[]))(spoiled)
    assert verify_bundle(spoiled).runtime.runners == ()
