"""The device runner: one job (a JSON file the host wrote: which runner, which files with which sha256,
the protocol) on one bundle. It verifies every file, runs the runtime, writes the scores of the golden
positions to <out>/scores.npz and prints one tagged JSON line of raw results; anything else on stdout is
the runtime's own log. An error is reported the same way, with `error_kind` "job" (the bundle or the
runtime failed: never retried) or "infra" (the device: out of memory, disk).

    python device_runner.pyz JOB.json --out DIR [--pid-file FILE] [--exit-on-stdin-eof]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import resource
import sys
import threading
import time
import traceback
from pathlib import Path

RESULT_TAG = "LLAMAPORT_RESULT "
SCORES = "scores.npz"


class JobError(Exception):
    """The job cannot succeed on any device (a modified bundle, a runtime error on its model)."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_files(bundle: Path, job: dict) -> None:
    """Every file of the manifest, and the manifest itself, as the host's manifest says: before any load."""
    if sha256_of(bundle / "manifest.json") != job["manifest_sha256"]:
        raise JobError(f"{bundle / 'manifest.json'}: differs from the host's manifest (sha256)")
    for entry in job["files"]:
        path = bundle / entry["path"]
        if not path.is_file():
            raise JobError(f"{path}: listed in the manifest but missing on the device")
        if path.stat().st_size != entry["bytes"] or sha256_of(path) != entry["sha256"]:
            raise JobError(f"{path}: differs from the manifest (bytes or sha256); the bundle was modified")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def emit(result: dict) -> None:
    sys.stdout.flush()
    print("\n" + RESULT_TAG + json.dumps(result), flush=True)


def _exit_when_stdin_closes() -> None:
    """The host keeps our stdin open for the whole job; EOF means the connection is gone: stop at once,
    so a dropped ssh or adb session leaves nothing running on the device."""
    def watch():
        sys.stdin.buffer.read()
        os._exit(3)
    threading.Thread(target=watch, daemon=True).start()


def run_job(job: dict, out: Path) -> dict:
    from .golden_file import read_golden_inputs
    from .scores import gather_scores
    from .timing import greedy, timed_runs

    bundle = Path(job["bundle"])
    verify_files(bundle, job)
    golden = read_golden_inputs(bundle / job["golden"])
    p = job["protocol"]
    if job["runner"] == "executorch-llm-runner":
        from .drivers.executorch_llm import generate_timed
        return generate_timed(bundle, job, golden.latency_prompt_text, p["decode_tokens"], p["warmup"], p["repeats"])
    from .drivers import DRIVERS
    driver = importlib.import_module(f".drivers.{DRIVERS[job['runner']]}", __package__)
    model = driver.load(bundle, job)
    result = {"load_s": model.load_s}
    if job["accuracy"]:
        logits = model.teacher_forced_logits(golden.ids)
        import numpy as np
        np.savez(out / SCORES, **gather_scores(logits, golden.ids, golden.topk_ids, bool(golden.full_references)))
        result.update(scores=SCORES, greedy=[greedy(model, prompt, golden.greedy_tokens) for prompt in golden.prompts])
    # A simulator's speed says nothing about the hardware's: such drivers are not timed.
    timed = getattr(model, "timed", True)
    result["runs"] = timed_runs(model, golden.latency_prompt, p["decode_tokens"], p["warmup"], p["repeats"]) if timed else []
    result["prompt_tokens"] = len(golden.latency_prompt)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="device_runner")
    parser.add_argument("job", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pid-file", type=Path)
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    args = parser.parse_args(argv)
    if args.exit_on_stdin_eof:
        _exit_when_stdin_closes()
    if args.pid_file:
        args.pid_file.write_text(str(os.getpid()))
    try:
        return _run(args)
    finally:
        if args.pid_file:  # a pid file left behind names an interrupted run (the transport's kill_stale)
            args.pid_file.unlink(missing_ok=True)


def _run(args) -> int:
    job = json.loads(args.job.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    started, before = time.time(), rss_mb()
    try:
        result = run_job(job, args.out)
    except JobError as e:
        emit({"runner": job["runner"], "error": str(e), "error_kind": "job"})
        return 1
    except MemoryError as e:
        emit({"runner": job["runner"], "error": f"MemoryError: {e}", "error_kind": "infra"})
        return 1
    except Exception as e:  # a runtime failing on this bundle's model: the job's fault, reported, not retried
        traceback.print_exc()
        emit({"runner": job["runner"], "error": f"{type(e).__name__}: {e}", "error_kind": "job"})
        return 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    emit({"runner": job["runner"], **result, "rss_before_load_mb": before, "peak_rss_mb": peak,
          "wall_s": time.time() - started})
    return 0
