"""The device side needs only the runtime: the zipped device runner, run by an interpreter that has the
runtime's wheels and nothing else (no llamaport, no torch, no transformers), checks a bundle to the same
accuracy numbers as this host's own check. And raw results are scored on the host, so a device that
changes a byte of the bundle is refused there as a job error."""

import json
import shutil
import subprocess
import sys

import pytest

from llamaport.compile.pipeline import DEFAULT_MODEL
from llamaport.errors import JobError
from llamaport.runtime_tests.device_job import build_device_runner
from llamaport.runtime_tests.harness import CheckRequest, check_bundle
from llamaport.runtime_tests.latency import LatencyProtocol
from tests.fixtures.device_env import runtime_only_python  # noqa: F401  (a fixture)

def test_the_device_environment_has_the_runtime_and_nothing_of_llamaport(runtime_only_python, tmp_path):
    code = ("import importlib.util as u, onnxruntime_genai, onnxruntime; "
            "print([m for m in ('llamaport', 'torch', 'transformers', 'safetensors', 'executorch') if u.find_spec(m)])")
    out = subprocess.run([runtime_only_python, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_a_runtime_only_device_checks_to_the_same_accuracy_as_this_host(runtime_only_python, bundle, checked, tmp_path):
    built = bundle(DEFAULT_MODEL, "ortgenai-cpu-8da4w-g32")
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(f'[[device]]\nid = "board"\ntarget = "linux-x86_64-ort"\ntransport = "local"\n'
                         f'python = "{runtime_only_python}"\nworkdir = "{tmp_path / "board"}"\n')
    on_board = check_bundle(CheckRequest(built.bundle, device="board", inventory=inventory,
                                         protocol=LatencyProtocol(8, 0, 1)))
    here, _ = checked(DEFAULT_MODEL, "ortgenai-cpu-8da4w-g32", baselines=True)
    assert on_board.device.name == "board" and set(on_board.runners) == {"onnxruntime-genai", "onnxruntime"}
    for runner in ("onnxruntime-genai", "onnxruntime"):
        assert on_board.runners[runner].accuracy == here.runners[runner].accuracy
    assert on_board.summary.kld_mean == here.summary.kld_mean and on_board.summary.same_top1_pct >= 90.0
    assert (tmp_path / "board" / "bundles" / on_board.bundle.sha256 / "model" / "model.onnx").is_file()


def test_a_changed_byte_on_the_device_is_a_job_error(bundle, tmp_path):
    """The device re-verifies every file against the host's manifest before loading anything."""
    from llamaport.runtime_tests.bundle_files import sha256_of, verify_bundle
    from llamaport.runtime_tests.device_job import device_job

    built = bundle(DEFAULT_MODEL, "ortgenai-cpu-8da4w-g32")
    copy = tmp_path / "on_device"
    shutil.copytree(built.bundle, copy)
    with open(copy / "model" / "model.onnx.data", "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    manifest = verify_bundle(built.bundle)
    job = tmp_path / "job.json"
    job.write_text(json.dumps(device_job(manifest, sha256_of(built.bundle / "manifest.json"), str(copy),
                                         "onnxruntime-genai", LatencyProtocol(4, 0, 1))))
    runner = build_device_runner(tmp_path)
    out = subprocess.run([sys.executable, str(runner), str(job), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    from llamaport.runtime_tests.device_session import parse_result
    from llamaport.targets.transports.base import RunResult

    assert out.returncode == 1
    with pytest.raises(JobError, match="model.onnx.data: differs from the manifest"):
        parse_result("board", "runner onnxruntime-genai", RunResult(out.returncode, out.stdout, out.stderr))
    assert not (tmp_path / "out" / "scores.npz").exists()


def test_the_observer_line_is_parsed_in_executorchs_own_format():
    """stats.h's PyTorchObserver line (what llama_main prints on a phone): milliseconds since an epoch."""
    from llamaport.runtime_tests.scoring import parse_observer

    line = ('PyTorchObserver {"prompt_tokens":31,"generated_tokens":65,"model_load_start_ms":1000,"model_load_end_ms":1012,'
            '"inference_start_ms":2000,"inference_end_ms":2040,"prompt_eval_end_ms":2002,"first_token_ms":2004,'
            '"aggregate_sampling_time_ms":3,"SCALING_FACTOR_UNITS_PER_SECOND":1000}')
    run = parse_observer(line)
    assert run["prompt_tokens"] == 31 and run["generated_tokens"] == 65 and run["load_s"] == pytest.approx(0.012)
    assert run["ttft_s"] == pytest.approx(0.004) and run["prefill_tokens_per_s"] == pytest.approx(31 / 0.002)
    assert run["decode_tokens_per_s"] == pytest.approx(64 / 0.036)
    same_clock = parse_observer(line.replace('"first_token_ms":2004', '"first_token_ms":2000'))
    assert same_clock["ttft_s"] is None  # under the runner's 1 ms clock: unmeasured, not 0
