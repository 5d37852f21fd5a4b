"""The farm across hosts, placed by Ray. Each farm agent (`llamaport farm agent`) starts a Ray node that
advertises one custom resource per device it holds (`device:<id>`: 1), so Ray places a job on the node that
holds its device and runs one job per device at a time. Ray's own retries are off (max_retries=0): a retry
could land on the same broken device, a task for a resource that vanished waits forever, and a node Ray
declared dead can still deliver its result. The farm re-plans instead, bounded by timeouts, and the
store's insert-if-absent keys make a late result count once. Bundles travel through Ray's object store,
so a node needs no shared file system."""

from __future__ import annotations

import dataclasses
import io
import re
import tarfile
import tempfile
import time
from pathlib import Path

from llamaport.runtime_tests.farm.executor import (INFRA_ERROR, JOB_ERROR, LOST, OK, TIMEOUT, Outcome, result_summary,
                                                  store_result)
from llamaport.runtime_tests.farm.jobs import Job, JobState, can_serve
from llamaport.runtime_tests.farm.scheduler import FarmOutcome
from llamaport.runtime_tests.report import runner_result

DEVICE_RESOURCE = "device:"


def device_resources(device_ids) -> dict[str, float]:
    return {f"{DEVICE_RESOURCE}{d}": 1.0 for d in device_ids}


def _bundle_bytes(bundle: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(bundle, arcname=".")
    return buffer.getvalue()


def run_on_node(job: Job, entry, bundle_tar: bytes, timeout_s: float) -> dict:
    """Runs on the Ray node that holds the device: the bundle unpacked into a temporary folder, the job run
    through the device's transport, the raw result scored here. Returns {"outcome", "detail", "result",
    "node"}; an infrastructure failure is an outcome, not an exception, so Ray never retries it."""
    from llamaport.errors import DeviceError, JobError
    from llamaport.runtime_tests.device_session import DeviceSession
    from llamaport.runtime_tests.farm.executor import run_measured
    from llamaport.typed import to_dict

    import ray

    node = ray.get_runtime_context().get_node_id()  # which Ray node ran it: the one that holds the device
    with tempfile.TemporaryDirectory(prefix="llamaport-ray-") as tmp:
        bundle = Path(tmp) / "bundle"
        with tarfile.open(fileobj=io.BytesIO(bundle_tar)) as tar:
            tar.extractall(bundle, filter="data")
        (Path(tmp) / "work").mkdir()
        try:
            session = DeviceSession(entry, Path(tmp) / "work", timeout_s)
            result, measured = run_measured(session, dataclasses.replace(job, bundle=bundle))
        except JobError as e:
            return {"outcome": JOB_ERROR, "detail": str(e), "node": node}
        except DeviceError as e:
            return {"outcome": TIMEOUT if "ran past" in str(e) else INFRA_ERROR, "detail": str(e), "node": node}
    return {"outcome": OK, "result": to_dict(result), "summary": result_summary(result, measured), "node": node}


class RayFarm:
    def __init__(self, store, inventory, settings, address: str, progress=lambda *a: None, poll_s: float = 0.5):
        self.store, self.inventory, self.settings, self.address = store, inventory, settings, address
        self.progress, self.poll_s = progress, poll_s
        self.outcome = FarmOutcome()
        self.retired: set[str] = set()  # devices that failed for infrastructure in this run

    def _advertised(self) -> set[str]:
        """Devices some live node holds now (a node that died takes its devices with it)."""
        import ray

        held = set()
        for node in ray.nodes():
            if node.get("Alive"):
                held |= {k[len(DEVICE_RESOURCE):] for k in node.get("Resources", {}) if k.startswith(DEVICE_RESOURCE)}
        return held

    def run(self, jobs: list[Job]) -> FarmOutcome:
        import ray

        ray.init(address=self.address, logging_level="ERROR", log_to_driver=False)
        try:
            self._loop([JobState(j) for j in jobs])
        finally:
            ray.shutdown()
        return self.outcome

    def _loop(self, pending: list[JobState]) -> None:
        import ray

        remote = ray.remote(run_on_node)
        tars: dict[str, object] = {}
        running: dict = {}  # ref -> (state, device, attempt id, started)
        while pending or running:
            # Ray's node table can still list a node whose task just failed with NodeDiedError: a device that
            # failed for infrastructure leaves this run (the local farm probes it; here its node is gone).
            held = self._advertised() - self.retired
            for state in pending:  # a job pinned to a device no live node holds goes to another of its target
                if state.job.device and state.job.device not in held:
                    state.excluded.add(state.job.device)
            self._cancel_vanished(running, held, pending)
            busy = {device.id for _, device, _, _ in running.values()}
            for device in self.inventory.devices:
                if device.id in busy or device.id not in held:
                    continue
                state = next((s for s in pending if can_serve(device, s)), None)
                if state is None:
                    continue
                pending.remove(state)
                state.attempts += 1
                if state.job.bundle_sha256 not in tars:
                    tars[state.job.bundle_sha256] = ray.put(_bundle_bytes(state.job.bundle))
                attempt = self.store.record_attempt(state.job.key, state.attempts, state.job.run_id, device.id, "ray")
                ref = remote.options(resources=device_resources([device.id]), num_cpus=0, max_retries=0).remote(
                    state.job, device, tars[state.job.bundle_sha256], self.settings.timeout_s)
                running[ref] = (state, device, attempt, time.monotonic())
                busy.add(device.id)
            if not running:
                for state in pending:  # nothing can serve what is left: say so, as rows
                    self._lost(state, "no live node holds a healthy device of its target")
                self.outcome.unfinished = [s.job.key for s in pending]
                return
            ready, _ = ray.wait(list(running), num_returns=1, timeout=self.poll_s)
            for ref in ready:
                self._collect(ref, running.pop(ref), pending)
            self._expire(running, pending)

    def _collect(self, ref, entry, pending: list[JobState]) -> None:
        import ray

        state, device, attempt, _ = entry
        try:
            answer = ray.get(ref)
        except (ray.exceptions.RayError, OSError) as e:  # the node or its worker died: infrastructure
            text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()  # Ray colours its messages
            answer = {"outcome": LOST, "detail": f"{type(e).__name__}: {' | '.join(text[:1] + text[-1:])}", "node": "?"}
        self._record(state, device, attempt, answer, pending)

    def _cancel_vanished(self, running: dict, held: set[str], pending: list[JobState]) -> None:
        """A task for a device whose node is gone would wait forever (Ray keeps an infeasible task pending):
        cancel it and re-plan the job."""
        import ray

        for ref, (state, device, attempt, _) in list(running.items()):
            if device.id not in held and device.id not in self.retired:
                ray.cancel(ref, force=True)
                running.pop(ref)
                self._record(state, device, attempt, {"outcome": LOST, "detail": "its device's node left the cluster"},
                             pending)

    def _expire(self, running: dict, pending: list[JobState]) -> None:
        """A task past its timeout (plus a margin for the transfer) is cancelled and re-planned."""
        import ray

        for ref, (state, device, attempt, started) in list(running.items()):
            if time.monotonic() - started > self.settings.timeout_s + 60:
                ray.cancel(ref, force=True)
                running.pop(ref)
                self._record(state, device, attempt, {"outcome": TIMEOUT, "detail": "cancelled past its timeout"}, pending)

    def _record(self, state: JobState, device, attempt: int, answer: dict, pending: list[JobState]) -> None:
        job, outcome = state.job, answer["outcome"]
        self.store.finish_attempt(attempt, outcome, answer.get("detail", "") or f"ran on Ray node {answer.get('node')}")
        new = None
        if outcome == OK:
            result = runner_result(answer["result"], origin=f"device {device.id} on Ray node {answer.get('node')}")
            new = store_result(self.store, job, device.id, answer["summary"], result)
            self.outcome.results += 1 if new else 0
            self.outcome.duplicates += 0 if new else 1
        elif outcome == JOB_ERROR:
            store_result(self.store, job, device.id, {"error": answer["detail"]})
            self.outcome.job_errors += 1
        else:
            self.outcome.infra_failures += 1
            self.retired.add(device.id)
            self.store.set_health(device.id, "unknown", f"{outcome}: {answer.get('detail', '')}"[:500])
            state.excluded.add(device.id)
            if state.attempts < self.settings.max_attempts:
                pending.append(state)
            else:
                self.outcome.unfinished.append(job.key)
        self.progress(job, device.id, Outcome(outcome, answer.get("detail", ""), new))

    def _lost(self, state: JobState, why: str) -> None:
        attempt = self.store.record_attempt(state.job.key, state.attempts + 1, state.job.run_id, "-", "ray")
        self.store.finish_attempt(attempt, LOST, why)

