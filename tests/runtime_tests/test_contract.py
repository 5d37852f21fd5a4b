"""The bundle contract and the report as typed data: round trips, refusals of other schema versions, and
type errors named by field (torchao's test_config style: every record survives to_dict/from_dict)."""

import json

import pytest

from llamaport.compile.pipeline import DEFAULT_MODEL
from llamaport.errors import ConfigError
from llamaport.runtime_tests.manifest import MANIFEST_SCHEMA_VERSION, Manifest, read_manifest
from llamaport.runtime_tests.report import REPORT_SCHEMA_VERSION, Report, read_report


@pytest.mark.parametrize("recipe", ["et-xnnpack-8da4w-g32", "ortgenai-cpu-8da4w-g32", "onnx-cpu-8da8w"])
def test_every_layouts_manifest_round_trips(recipe, bundle):
    m = bundle(DEFAULT_MODEL, recipe).manifest
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict())), "test") == m
    assert read_manifest(bundle(DEFAULT_MODEL, recipe).bundle) == m


def test_a_report_round_trips(checked):
    report, folder = checked(DEFAULT_MODEL, "et-xnnpack-8da4w-g32", baselines=True)
    assert Report.from_dict(json.loads(json.dumps(report.to_dict())), "test") == report
    assert read_report(folder) == report


def test_a_bundle_of_another_schema_version_is_refused_in_one_line(bundle, tmp_path):
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(bundle(DEFAULT_MODEL, "et-xnnpack-fp32").bundle, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["schema_version"] = 1
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError) as e:
        read_manifest(copy)
    assert str(e.value) == (f"{copy / 'manifest.json'}: bundle schema_version 1; this llamaport reads bundle schema "
                            f"{MANIFEST_SCHEMA_VERSION}: rebuild the bundle with this llamaport")


def test_a_manifest_field_of_the_wrong_type_is_named(bundle):
    data = bundle(DEFAULT_MODEL, "et-xnnpack-fp32").manifest.to_dict()
    data["model"]["eos_ids"] = ["two"]
    with pytest.raises(ConfigError, match=r"field 'model\.eos_ids\[0\]' must be int, got 'two'"):
        Manifest.from_dict(data, "m.json")
    data = bundle(DEFAULT_MODEL, "et-xnnpack-fp32").manifest.to_dict()
    del data["runtime"]["tokenizer"]
    with pytest.raises(ConfigError, match=r"m\.json: runtime: missing keys \['tokenizer'\]"):
        Manifest.from_dict(data, "m.json")


def test_a_report_of_another_schema_version_is_refused(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"schema_version": 1, "summary": {}}))
    with pytest.raises(ConfigError, match=f"report schema_version 1; this llamaport reads report schema {REPORT_SCHEMA_VERSION}"):
        read_report(tmp_path)
