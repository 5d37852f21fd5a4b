"""One check's conversation with one device: the zipped device runner put once, each bundle once (cached on
the device by its manifest's sha256), one job file per runner; the raw result line parsed and the scores
file fetched back, then scored here. Errors keep their kind: the runner's own error is a JobError (the
bundle's fault, never retried), anything the link or the device did is an InfraError (retried elsewhere)."""

from __future__ import annotations

import json
import posixpath
import sys
from pathlib import Path

from llamaport.errors import DeviceError, JobError
from llamaport.runtime_tests.bundle_files import sha256_of
from llamaport.runtime_tests.device.main import RESULT_TAG
from llamaport.runtime_tests.device_job import build_device_runner, device_job
from llamaport.runtime_tests.manifest import GOLDEN_PATH, MANIFEST
from llamaport.runtime_tests.report import RunnerResult, runner_result
from llamaport.targets.devices import transport_for
from llamaport.targets.transports.base import InfraError, RunResult, run_open_stdin

EAGER_MODULE = "llamaport.compile.eager_run"


def parse_result(device: str, what: str, res: RunResult) -> dict:
    """The last tagged line, or the reason there is none (the process died: the device's failure)."""
    lines = [ln[len(RESULT_TAG):] for ln in res.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if not lines:
        tail = (res.stderr.strip().splitlines() or res.stdout.strip().splitlines() or ["no output"])[-1]
        raise InfraError(f"device {device}: {what} ended (exit {res.returncode}) without a result: {tail}")
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise InfraError(f"device {device}: {what} printed a malformed result line ({e})") from e
    if "error" in result:
        kind = JobError if result.get("error_kind") == "job" else InfraError
        raise kind(f"device {device}: {what} failed: {result['error']}")
    return result


class DeviceSession:
    def __init__(self, entry, work: Path, timeout_s: float):
        self.entry, self.work, self.timeout_s = entry, Path(work), timeout_s
        self.transport = transport_for(entry, self.work / "device" if entry.transport == "local" else None)
        self.runner_path: str | None = None
        self.last_raw_line = ""  # the device's last result line as it printed it (the farm stores it)
        self.goldens: dict[Path, object] = {}
        self.jobs = 0

    def probe(self) -> dict:
        return self.transport.probe(min(60.0, self.timeout_s))

    def _runner(self) -> str:
        if self.runner_path is None:
            local = build_device_runner(self.work)
            self.runner_path = self.transport.put_file(local, local.name)
        return self.runner_path

    def _golden(self, bundle: Path):
        from llamaport.runtime_tests.golden import Golden

        key = Path(bundle).resolve()
        if key not in self.goldens:
            self.goldens[key] = Golden.load(key / GOLDEN_PATH)
        return self.goldens[key]

    def run_bundle(self, bundle: Path, manifest, runner: str, protocol, accuracy: bool = True) -> RunnerResult:
        sha = sha256_of(Path(bundle) / MANIFEST)
        remote_bundle = self.transport.put_bundle(Path(bundle), sha)
        runner_path = self._runner()
        self.jobs += 1
        key = f"{self.jobs:03d}-{runner}-{sha[:12]}"
        job_file = self.work / f"job-{key}.json"
        job_file.write_text(json.dumps(device_job(manifest, sha, remote_bundle, runner, protocol, accuracy)))
        remote_job = self.transport.put_file(job_file, job_file.name)
        workdir = posixpath.dirname(runner_path)
        out = f"{workdir}/out/{key}"
        argv = [self.entry.python, runner_path, remote_job, "--out", out, "--pid-file", f"{workdir}/run.pid",
                "--exit-on-stdin-eof"]
        res = self.transport.run(argv, self.timeout_s)
        self.last_raw_line = next((ln for ln in reversed(res.stdout.splitlines()) if ln.startswith(RESULT_TAG)), "")
        raw = parse_result(self.entry.id, f"runner {runner} on {Path(bundle).name}", res)
        scores = None
        if raw.get("scores"):
            local = self.work / f"scores-{key}.npz"
            self.transport.fetch(f"{out}/{raw['scores']}", local)
            scores = _load_scores(local)
        return self._result(raw, self._golden(bundle), scores, protocol, f"device {self.entry.id}: runner {runner}")

    def run_eager(self, model: Path, bundle: Path, protocol) -> RunnerResult:
        """The eager full model, on this host (where its files are), with the same protocol and prompt."""
        out = self.work / f"eager-{self.jobs}"
        self.jobs += 1
        argv = [sys.executable, "-m", EAGER_MODULE, str(model), "--golden", str(Path(bundle) / GOLDEN_PATH),
                "--out", str(out), "--decode-tokens", str(protocol.decode_tokens), "--warmup", str(protocol.warmup),
                "--repeats", str(protocol.repeats)]
        try:
            res = run_open_stdin(argv, self.timeout_s)
        except Exception as e:
            raise DeviceError(f"this host: the eager baseline ({' '.join(argv[3:5])}) did not finish ({e})") from e
        raw = parse_result("host", "the eager baseline", res)
        scores = _load_scores(out / raw["scores"]) if raw.get("scores") else None
        return self._result(raw, self._golden(bundle), scores, protocol, "host: eager baseline")

    @staticmethod
    def _result(raw: dict, golden, scores, protocol, origin: str) -> RunnerResult:
        from llamaport.runtime_tests.scoring import latency_from_observer, latency_from_runs, score

        fields = {"runner": raw["runner"], "peak_rss_mb": raw["peak_rss_mb"], "rss_before_load_mb": raw["rss_before_load_mb"]}
        if "observer_lines" in raw:  # the LLM runner: text in, its own stats out
            latency, load_s, prompt_tokens = latency_from_observer(raw["observer_lines"], protocol.to_dict())
            fields.update(load_s=load_s, latency=latency, accuracy=None,
                          prompt_tokens_match=prompt_tokens == len(golden.latency_prompt))
        else:
            fields.update(load_s=raw["load_s"], latency=latency_from_runs(raw["runs"], raw["prompt_tokens"], protocol.to_dict()),
                          accuracy=score(golden, scores, raw["greedy"]) if scores is not None else None)
        try:
            return runner_result(fields, origin=f"{origin}: result")
        except Exception as e:
            raise InfraError(f"{origin}: result line does not fit the report ({e})") from e


def _load_scores(path: Path) -> dict:
    import numpy as np

    with np.load(path) as data:
        return {k: data[k] for k in data.files}
