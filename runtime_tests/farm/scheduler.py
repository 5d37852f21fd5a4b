"""The farm on one host: one worker per device, one job per device at a time (a kernel file lock per
device, so separate llamaport processes exclude each other too), jobs handed to any healthy device that
can serve them. As the trusted farms do it: health is kept apart from busy/idle; a device whose health is
not good is probed before its next job and taken out of the farm if the probe fails; only infrastructure
failures are retried, on another device, up to a limit; every attempt is a row; results are written
insert-if-absent; a run can be resumed (only jobs without a result are planned again); Ctrl-C records
what it cut short as `lost` attempts."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from llamaport.errors import DeviceError, StageError
from llamaport.runtime_tests.farm.executor import INFRA_ERROR, JOB_ERROR, LOST, OK, TIMEOUT, Outcome, run_attempt
from llamaport.runtime_tests.farm.jobs import Job, JobState, can_serve


@dataclass(frozen=True)
class FarmSettings:
    max_attempts: int = 3  # attempts per job, infrastructure failures included
    timeout_s: float = 1800.0  # per attempt
    lock_folder: Path | None = None  # default: ~/.cache/llamaport/locks


@dataclass
class FarmOutcome:
    results: int = 0
    duplicates: int = 0
    job_errors: int = 0
    infra_failures: int = 0
    unfinished: list[str] = field(default_factory=list)  # job keys no device could finish


ProgressFn = Callable[[Job, str, Outcome], None]  # (job, device id, outcome) as each attempt ends


class LocalFarm:
    def __init__(self, store, inventory, settings: FarmSettings, progress: ProgressFn = lambda *a: None):
        self.store, self.inventory, self.settings, self.progress = store, inventory, settings, progress
        self.lock = threading.Condition()
        self.pending: list[JobState] = []
        self.running: dict[str, tuple[JobState, str]] = {}  # device id -> (job, attempt started)
        self.active_devices: set[str] = set()
        self.outcome = FarmOutcome()
        self.crashes: list[str] = []  # workers stopped by an error of llamaport's own (not the device's)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # unique per farm process

    def run(self, jobs: list[Job]) -> FarmOutcome:
        self.pending = [JobState(j) for j in jobs]
        devices = [d for d in self.inventory.devices if any(can_serve(d, s) for s in self.pending)]
        self.active_devices = {d.id for d in devices}
        workers = [threading.Thread(target=self._worker, args=(d,), daemon=True, name=f"farm-{d.id}") for d in devices]
        for w in workers:
            w.start()
        try:
            for w in workers:
                while w.is_alive():
                    w.join(0.2)
        except KeyboardInterrupt:
            self._record_cut_short()
            raise
        if self.crashes:
            raise StageError("farm", f"a worker stopped: {'; '.join(self.crashes)}")
        self.outcome.unfinished = [s.job.key for s in self.pending]
        for state in self.pending:  # never a silent loss: the reason is a row
            self._lost(state, "no healthy device of its target could run it")
        return self.outcome

    def _next(self, device) -> JobState | None:
        with self.lock:
            while True:
                state = next((s for s in self.pending if can_serve(device, s)), None)
                if state is not None:
                    self.pending.remove(state)
                    self.running[device.id] = (state, "")
                    return state
                if not self.running or all(d == device.id for d in self.running):
                    return None  # nothing pending for us and nothing running that could hand a job back
                self.lock.wait(0.5)
                if not any(can_serve(device, s) for s in self.pending) and not self._others_running(device):
                    return None

    def _others_running(self, device) -> bool:
        return any(d != device.id for d in self.running)

    def _worker(self, device) -> None:
        """One device's loop. Whatever stops it, its job is no longer running, so the other workers, which
        wait while any job runs that could come back to them, never wait for it forever."""
        try:
            self._serve(device)
        except BaseException as e:  # noqa: BLE001  (reported by run(), which raises it)
            with self.lock:
                self.running.pop(device.id, None)
                self.crashes.append(f"worker {device.id}: {type(e).__name__}: {e}")
        finally:
            with self.lock:
                self.active_devices.discard(device.id)
                self.lock.notify_all()

    def _serve(self, device) -> None:
        from llamaport.runtime_tests.farm.leases import FileLease

        folder = self.settings.lock_folder or Path("~/.cache/llamaport/locks").expanduser()
        while True:
            state = self._next(device)
            if state is None:
                break
            with FileLease(device.id, folder):
                if not self._store_lease(device, state):
                    continue  # another host's farm has the device: the job went back to the queue
                try:
                    if not self._healthy(device):
                        self._give_back(state, device, Outcome(INFRA_ERROR, "probe failed"))
                        break
                    state.attempts += 1
                    result = run_attempt(self.store, state.job, device, state.attempts, self.settings.timeout_s)
                finally:
                    self.store.leases.release_lease(device.id, self.holder)
            self._finish(state, device, result)

    def _store_lease(self, device, state: JobState) -> bool:
        """The device's lease row in the shared store: on one host the file lock suffices, but several hosts'
        farms sharing one PostgreSQL store exclude each other here. It expires if we die holding it."""
        ttl = self.settings.timeout_s + 120  # an attempt ends by its timeout; past that the holder is gone
        if self.store.leases.take_lease(device.id, self.holder, state.job.key, ttl):
            return True
        with self.lock:
            self.running.pop(device.id, None)
            self.pending.append(state)
            self.lock.notify_all()
        time.sleep(1.0)
        return False

    def _healthy(self, device) -> bool:
        """Probe a device whose health is not good; a failed probe takes it out of this run (health bad)."""
        if self.store.health(device.id) == "good":
            return True
        from llamaport.runtime_tests.device_session import DeviceSession

        try:
            with tempfile.TemporaryDirectory(prefix="llamaport-probe-") as tmp:
                facts = DeviceSession(device, Path(tmp), 60.0).probe()
        except DeviceError as e:
            self.store.upsert_device(device.id, device.target, device.transport, {})
            self.store.set_health(device.id, "bad", f"probe failed: {e}")
            return False
        self.store.upsert_device(device.id, device.target, device.transport, facts)
        self.store.set_health(device.id, "good", "probe passed")
        return True

    def _finish(self, state: JobState, device, result: Outcome) -> None:
        self.progress(state.job, device.id, result)
        with self.lock:
            self.running.pop(device.id, None)
            if result.outcome == OK:
                self.outcome.results += 1 if result.result_new else 0
                self.outcome.duplicates += 0 if result.result_new else 1
            elif result.outcome == JOB_ERROR:
                self.outcome.job_errors += 1
            else:
                self._retry(state, device)
            self.lock.notify_all()

    def _give_back(self, state: JobState, device, result: Outcome) -> None:
        """The device failed its probe and leaves this run: its job, and every job pinned to it, is free for
        any other device of the target."""
        with self.lock:
            self.running.pop(device.id, None)
            self.pending.append(state)
            for pending in self.pending:
                pending.excluded.add(device.id)
            self.lock.notify_all()

    def _retry(self, state: JobState, device) -> None:
        """An infrastructure failure (or timeout): elsewhere, up to the limit. Called under the lock."""
        self.outcome.infra_failures += 1
        state.excluded.add(device.id)
        if state.attempts < self.settings.max_attempts:
            self.pending.append(state)
        else:
            self.outcome.unfinished.append(state.job.key)

    def _lost(self, state: JobState, why: str) -> None:
        attempt = self.store.record_attempt(state.job.key, state.attempts + 1, state.job.run_id, "-", socket.gethostname())
        self.store.finish_attempt(attempt, LOST, why)

    def _record_cut_short(self) -> None:
        """Ctrl-C: the attempts under way become `lost` rows (their device processes end when our pipes
        to them close, by the runner's stdin watch)."""
        for attempt in self.store.attempts(run_id=self._run_id()):
            if attempt.outcome is None:
                self.store.finish_attempt(attempt.id, LOST, "interrupted (Ctrl-C)")

    def _run_id(self) -> str | None:
        states = [s for s, _ in self.running.values()] + self.pending
        return states[0].job.run_id if states else None


__all__ = ["FarmOutcome", "FarmSettings", "LocalFarm", "TIMEOUT"]
