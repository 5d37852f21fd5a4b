"""Property-based bad inputs (hypothesis): valid configs, headers and manifests with one field replaced by an
arbitrary JSON value (or a header by arbitrary integers). Whatever the value, llamaport either accepts it or
refuses it with a ConfigError (exit 2) of one line naming the file or the field: never a raw Python error
(which the pipeline would report as a failed stage, exit 1), never a native crash or an allocation the file's
size does not justify. `pytest -m bad_input --hypothesis-show-statistics` prints how many examples ran."""

from __future__ import annotations

import json
import os
import resource
import shutil
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from llamaport.compile.pipeline import DEFAULT_MODEL, BuildRequest, run_build
from llamaport.errors import ConfigError, LlamaportError
from tests import source_writers

# Each example takes a few tens of milliseconds: the four run in about 20 s. A deeper search:
# LLAMAPORT_HYPOTHESIS_EXAMPLES=5000 pytest -m bad_input -k any_value --hypothesis-show-statistics
EXAMPLES = int(os.environ.get("LLAMAPORT_HYPOTHESIS_EXAMPLES", "100"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

_scalars = (st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.sampled_from([0, -1, 1, 2**31, 2**63])
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8))
JSON_VALUES = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=6)


def _refused_cleanly(folder: Path, source: Path, field: str) -> str:
    """Run the build up to the checkpoint (everything before the first forward pass); accept or refuse cleanly."""
    try:
        run_build(BuildRequest(model=source, out=folder / "out"), until="checkpoint")
    except ConfigError as e:
        message = str(e)
        assert "\n" not in message, message
        assert str(folder) in message or field in message, message  # names the file or the field
        assert not (folder / "out").exists() and not list(folder.glob(".out.partial-*"))
        return "refused"
    except LlamaportError as e:  # a StageError: a raw Python error escaped a validator
        pytest.fail(f"{field}: {type(e).__name__} {e}")
    return "accepted"


HF_FIELDS = sorted(json.loads((DEFAULT_MODEL / "config.json").read_text())) + ["head_dim", "rope_scaling"]


@SETTINGS
@given(field=st.sampled_from(HF_FIELDS), value=JSON_VALUES)
def test_any_value_of_any_config_json_field_is_accepted_or_refused_in_one_line(field, value):
    _with_one_field_replaced(DEFAULT_MODEL, "config.json", field, value)


def _with_one_field_replaced(source: Path, json_name: str, field: str, value) -> None:
    """A copy of the source folder with one field of its JSON config replaced, built up to the checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copytree(source, folder / "src")
        data = json.loads((folder / "src" / json_name).read_text())
        data[field] = value
        (folder / "src" / json_name).write_text(json.dumps(data))
        event(_refused_cleanly(folder, folder / "src", field))


@pytest.fixture(scope="module")
def meta_folder(tmp_path_factory, default_checkpoint):
    return source_writers.write_meta_folder(default_checkpoint, tmp_path_factory.mktemp("meta") / "meta")


META_FIELDS = ["dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "norm_eps", "rope_theta", "use_scaled_rope",
               "max_seq_len", "rope_scale_factor", "multiple_of", "ffn_dim_multiplier"]


@SETTINGS
@given(field=st.sampled_from(META_FIELDS), value=JSON_VALUES)
def test_any_value_of_any_params_json_field_is_accepted_or_refused_in_one_line(meta_folder, field, value):
    _with_one_field_replaced(meta_folder, "params.json", field, value)


@pytest.fixture(scope="module")
def llama2c_bin(tmp_path_factory, default_checkpoint):
    return source_writers.write_llama2c_bin(default_checkpoint, tmp_path_factory.mktemp("l2c") / "l2c", version=0)


_header_ints = st.integers(-2**31, 2**31 - 1) | st.integers(-4, 1024) | st.sampled_from([0, 1, 2**31 - 1, -2**31])


@SETTINGS
@given(dims=st.lists(_header_ints, min_size=7, max_size=7), keep=st.sets(st.integers(0, 6), max_size=6))
def test_any_llama2c_header_is_accepted_or_refused_without_allocating(llama2c_bin, dims, keep):
    """Arbitrary header integers (some fields kept from the valid header, so near-valid ones are tried too)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copytree(llama2c_bin.parent, folder / "l2c")
        path = folder / "l2c" / "model.bin"
        data = bytearray(path.read_bytes())
        valid = struct.unpack_from("<7i", data, 0)
        struct.pack_into("<7i", data, 0, *[valid[i] if i in keep else d for i, d in enumerate(dims)])
        path.write_bytes(bytes(data))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        event(_refused_cleanly(folder, path, "header"))
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 300_000  # KiB


@pytest.fixture(scope="module")
def sound_bundle(bundle):
    return bundle(DEFAULT_MODEL, "et-xnnpack-8da4w-g32").bundle


def _paths(data, prefix=()):
    """Every (key path) of the manifest down to depth 3, lists included by index."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        yield (*prefix, key)
        if len(prefix) < 2:
            yield from _paths(value, (*prefix, key))


@SETTINGS
@given(choice=st.integers(0, 10_000), value=JSON_VALUES)
def test_any_value_of_any_manifest_field_is_accepted_or_refused_in_one_line(sound_bundle, choice, value):
    from llamaport.runtime_tests.bundle_files import verify_bundle

    manifest = json.loads((sound_bundle / "manifest.json").read_text())
    paths = list(_paths(manifest))
    path = paths[choice % len(paths)]
    with tempfile.TemporaryDirectory() as tmp:
        spoiled = Path(tmp) / "bundle"
        shutil.copytree(sound_bundle, spoiled)
        target = manifest
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        (spoiled / "manifest.json").write_text(json.dumps(manifest))
        try:
            verify_bundle(spoiled)
            event("accepted")
        except ConfigError as e:
            assert "\n" not in str(e) and ("manifest.json" in str(e) or str(spoiled) in str(e)), str(e)
            event("refused")
