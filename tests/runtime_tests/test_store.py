"""The farm's results store and device leases, each test on a real SQLite file and on a real PostgreSQL
server (tests/fixtures/postgres.py): the same statements must behave the same on both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import inspect

from llamaport.errors import ConfigError, DeviceError
from llamaport.runtime_tests.farm.leases import DeviceBusy, FileLease
from llamaport.runtime_tests.farm.store import METADATA, OUTCOMES, job_key, open_store, protocol_hash
from tests.fixtures.postgres import _free_port, postgres_url  # noqa: F401  (postgres_url is a fixture)

TABLES = {"runs", "devices", "bundles", "attempts", "results", "device_leases"}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'farm' / 'store.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(url):
    s = open_store(url)
    yield s
    METADATA.drop_all(s.engine)  # the PostgreSQL database is shared by every test of the session
    s.close()


def _result(store, key: str, *, model="stories15m", recipe="et-xnnpack-8da4w-g32", device="rpi5-a",
            passed=True, created=None, tps=10.0, run_id="run-1") -> bool:
    return store.insert_result(job_key=key, run_id=run_id, bundle_sha256="b" * 64, device_id=device,
                               target="linux-arm64-xnnpack", protocol_hash=protocol_hash({"repeats": 5}),
                               runner="executorch", model=model, recipe=recipe, passed=passed,
                               summary={"decode_tokens_per_s": tps}, report={"schema_version": 1},
                               repeats=[tps, tps + 0.5], created=created)


def test_job_key_is_canonical_and_names_every_field():
    key = job_key("run-1", "b" * 64, "rpi5-a", {"repeats": 5, "warmup": 1}, "executorch")
    assert len(key) == 64 and int(key, 16) >= 0
    assert key == job_key("run-1", "b" * 64, "rpi5-a", {"warmup": 1, "repeats": 5}, "executorch")
    others = {job_key("run-2", "b" * 64, "rpi5-a", {"repeats": 5, "warmup": 1}, "executorch"),
              job_key("run-1", "c" * 64, "rpi5-a", {"repeats": 5, "warmup": 1}, "executorch"),
              job_key("run-1", "b" * 64, "pixel8", {"repeats": 5, "warmup": 1}, "executorch"),
              job_key("run-1", "b" * 64, "rpi5-a", {"repeats": 6, "warmup": 1}, "executorch"),
              job_key("run-1", "b" * 64, "rpi5-a", {"repeats": 5, "warmup": 1}, "onnxruntime")}
    assert len(others) == 5 and key not in others


def test_schema_creation_is_idempotent_and_keeps_rows(url, store):
    assert TABLES <= set(inspect(store.engine).get_table_names())
    assert store.start_run("run-1", {"jobs": 3}) is True
    store.ensure_schema()
    # A bare postgresql:// URL means psycopg (3), the driver llamaport installs.
    again = open_store(url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        again.ensure_schema()
        assert again.start_run("run-1", {"jobs": 99}) is False  # the first run is kept
        assert TABLES <= set(inspect(again.engine).get_table_names())
    finally:
        again.close()


def test_a_duplicate_result_keeps_the_first_row(store):
    key = job_key("run-1", "b" * 64, "rpi5-a", {"repeats": 5}, "executorch")
    before = time.time()
    assert _result(store, key, passed=True, tps=12.5) is True
    assert _result(store, key, passed=False, tps=1.0) is False  # a late duplicate changes nothing
    rows = store.results()
    assert len(rows) == 1
    assert (rows[0].passed, rows[0].summary, rows[0].repeats) == (True, {"decode_tokens_per_s": 12.5}, [12.5, 13.0])
    assert before - 5 < rows[0].created < time.time() + 5  # the server's clock, in seconds since the epoch
    assert store.has_result(key) and not store.has_result("0" * 64)


def test_every_attempt_outcome_is_a_row(store):
    ids = []
    for n, outcome in enumerate(OUTCOMES, start=1):
        ids.append(store.record_attempt("job-a", n, "run-1", f"dev{n}", node="host-1"))
        assert store.finish_attempt(ids[-1], outcome, detail=f"try {n}", raw_line=f"LLAMAPORT_RESULT {n}") is True
    running = store.record_attempt("job-a", 6, "run-1", "dev6")
    store.record_attempt("job-b", 1, "run-2", "dev1")

    rows = store.attempts(run_id="run-1")
    assert [r.outcome for r in rows] == [*OUTCOMES, None]
    assert [r.attempt for r in rows] == [1, 2, 3, 4, 5, 6] and [r.id for r in rows] == [*ids, running]
    assert all(r.ended >= r.started for r in rows[:5]) and rows[5].ended is None
    assert rows[2].detail == "try 3" and rows[2].raw_line == "LLAMAPORT_RESULT 3" and rows[2].node == "host-1"
    assert len(store.attempts(job_key="job-a")) == 6 and len(store.attempts()) == 7
    # An outcome is written once: a late "ok" for an attempt already recorded as lost changes nothing.
    assert store.finish_attempt(ids[4], "ok") is False and store.attempts(attempt_id=ids[4])[0].outcome == "lost"
    with pytest.raises(ConfigError, match="unknown attempt outcome 'oops'"):
        store.finish_attempt(running, "oops")
    with pytest.raises(ConfigError, match="no attempt '999999' in table attempts of"):
        store.finish_attempt(999999, "ok")


def test_results_filter_by_model_recipe_and_device(store):
    _result(store, "k1", model="m1", recipe="r1", device="d1", created=100.0)
    _result(store, "k2", model="m1", recipe="r2", device="d1", created=200.0)
    _result(store, "k3", model="m1", recipe="r1", device="d2", created=300.0, run_id="run-2")
    _result(store, "k4", model="m2", recipe="r1", device="d1", created=400.0)
    assert [r.job_key for r in store.results()] == ["k4", "k3", "k2", "k1"]  # newest first
    assert [r.job_key for r in store.results(model="m1")] == ["k3", "k2", "k1"]
    assert [r.job_key for r in store.results(model="m1", recipe="r1")] == ["k3", "k1"]
    assert [r.job_key for r in store.results(model="m1", recipe="r1", device="d1")] == ["k1"]
    assert [r.job_key for r in store.results(device="d1", limit=2)] == ["k4", "k2"]
    assert [r.job_key for r in store.results(run_id="run-2")] == ["k3"]
    assert len(store.results(target="linux-arm64-xnnpack")) == 4 and store.results(target="other") == []


def test_last_result_is_the_newest_before(store):
    for n, created in enumerate((100.0, 200.0, 300.0)):
        _result(store, f"k{n}", model="m", recipe="r", device="d1", created=created, tps=float(n))
    _result(store, "other-device", model="m", recipe="r", device="d2", created=400.0)
    assert store.last_result("m", "r", "d1").job_key == "k2"
    assert store.last_result("m", "r", "d1", before=300.0).job_key == "k1"
    assert store.last_result("m", "r", "d1", before=100.0) is None
    assert store.last_result("m", "other-recipe", "d1") is None


def test_health_is_set_and_kept_apart_from_device_facts(store):
    assert store.health("rpi5-a") == "unknown"  # never seen
    store.upsert_device("rpi5-a", "linux-arm64-xnnpack", "ssh", {"ram_gb": 8})
    assert store.health("rpi5-a") == "unknown"  # a new device is probed before it is trusted
    store.set_health("rpi5-a", "good")
    store.set_health("rpi5-a", "bad", "ssh exit 255 twice")
    store.upsert_device("rpi5-a", "linux-arm64-xnnpack", "ssh", {"ram_gb": 16})  # keeps the health
    row = store.device("rpi5-a")
    assert (row.health, row.health_reason, row.facts) == ("bad", "ssh exit 255 twice", {"ram_gb": 16})
    with pytest.raises(ConfigError, match=r"unknown device health 'god' \(did you mean 'good'\?\)"):
        store.set_health("rpi5-a", "god")
    with pytest.raises(ConfigError, match="no device 'pixel8' in table devices of .*upsert_device it first"):
        store.set_health("pixel8", "good")


def test_take_lease_is_exclusive_and_only_the_holder_releases(store):
    leases = store.leases
    assert leases.take_lease("rpi5-a", "host-a:1", "job-1", ttl_s=60) is True
    assert leases.take_lease("rpi5-a", "host-b:2", "job-2", ttl_s=60) is False
    assert leases.take_lease("rpi5-a", "host-a:1", "job-3", ttl_s=60) is False  # a live lease is renewed, not retaken
    assert leases.renew_lease("rpi5-a", "host-b:2", ttl_s=60) is False
    assert leases.renew_lease("rpi5-a", "host-a:1", ttl_s=120) is True
    assert leases.release_lease("rpi5-a", "host-b:2") is False  # a non-holder's release does nothing
    held = leases.lease("rpi5-a")
    assert (held.holder, held.job_key, held.expired) == ("host-a:1", "job-1", False)
    assert 100 < held.expires_at - time.time() < 140
    assert leases.release_lease("rpi5-a", "host-a:1") is True and leases.lease("rpi5-a") is None
    assert leases.take_lease("rpi5-a", "host-b:2", "job-2", ttl_s=60) is True


def test_two_stores_racing_for_leases_each_device_goes_to_one(url, store):
    """Two connections (two hosts) fire take_lease for the same 20 devices at once: one winner per device."""
    devices = [f"dev{n}" for n in range(20)]
    barrier, won = threading.Barrier(2), {}

    def host(name: str) -> None:
        own = open_store(url)
        try:
            barrier.wait()
            won[name] = {d for d in devices if own.leases.take_lease(d, name, "job", ttl_s=60)}
        finally:
            own.close()

    threads = [threading.Thread(target=host, args=(name,)) for name in ("host-a", "host-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert won["host-a"].isdisjoint(won["host-b"]) and won["host-a"] | won["host-b"] == set(devices)
    assert all(store.leases.lease(d).holder in ("host-a", "host-b") for d in devices)


def test_an_expired_lease_is_taken_over(store):
    leases = store.leases
    assert leases.take_lease("pixel8", "host-a:1", "job-1", ttl_s=0.3) is True
    assert leases.take_lease("pixel8", "host-b:2", "job-2", ttl_s=60) is False
    time.sleep(0.5)
    assert leases.lease("pixel8").expired is True
    assert leases.take_lease("pixel8", "host-b:2", "job-2", ttl_s=60) is True
    assert leases.renew_lease("pixel8", "host-a:1", ttl_s=60) is False  # the old holder lost it
    assert leases.release_lease("pixel8", "host-a:1") is False
    assert (leases.lease("pixel8").holder, leases.lease("pixel8").job_key) == ("host-b:2", "job-2")
    with pytest.raises(ConfigError, match="must be > 0 seconds"):
        leases.take_lease("pixel8", "host-a:1", "job-1", ttl_s=0)


def test_bad_urls_are_config_errors_naming_the_url(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    cases = {"mysql://farm@db/farm": "unsupported database 'mysql'",
             "no-url-here": "'no-url-here' is not a database URL",
             f"sqlite:///{not_a_folder}/store.sqlite": "pick a writable file path",
             f"postgresql+psycopg://farm@127.0.0.1:{_free_port()}/farm": "Connection refused; start the server"}
    for url, expected in cases.items():
        with pytest.raises(ConfigError) as info:
            open_store(url)
        message = str(info.value)
        assert expected in message and "\n" not in message and info.value.exit_code == 2
        assert url.split("/")[0] in message or url in message


def test_file_lease_is_exclusive_in_one_process(tmp_path):
    first, second = FileLease("rpi5-a", tmp_path), FileLease("rpi5-a", tmp_path, grace_s=0.2)
    assert first.acquire() is True and second.acquire() is False
    with pytest.raises(DeviceBusy, match=f"device rpi5-a is busy: process {os.getpid()} holds .*rpi5-a.lock"):
        second.__enter__()
    first.release()
    with second:
        assert second.held and not FileLease("rpi5-a", tmp_path).acquire()
    third = FileLease("rpi5-a", tmp_path)
    assert third.acquire() is True
    third.release()
    with pytest.raises(ConfigError, match="cannot name a lock file"):
        FileLease("../etc", tmp_path)



def test_file_lease_waits_out_a_forked_childs_copy_of_a_released_lock(tmp_path):
    """A child forked while we hold a lock keeps the flock alive after we release it, until it execs or
    exits; taking the device again must wait that moment out, not report our own process as the holder."""
    first = FileLease("rpi5-a", tmp_path)
    assert first.acquire()
    child = os.fork()
    if child == 0:  # what a subprocess is between fork and exec: a copy of every descriptor
        time.sleep(1.0)
        os._exit(0)
    try:
        first.release()
        again = FileLease("rpi5-a", tmp_path)
        assert again.acquire() is False  # the child's copy still holds it
        started = time.monotonic()
        with again:
            waited = time.monotonic() - started
        assert 0.3 < waited < FileLease.GRACE_S
    finally:
        os.waitpid(child, 0)

CHILD = """
import os, sys, time
from llamaport.runtime_tests.farm.leases import FileLease
folder, go = sys.argv[1], sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.001)
lease = FileLease("board1", folder)
print("held" if lease.acquire() else "busy", flush=True)
time.sleep(60)
"""


def test_file_lease_race_between_processes_and_release_on_sigkill(tmp_path):
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(go)], stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    try:
        go.touch()  # both children spin on this file, then lock at the same moment
        said = {p.pid: p.stdout.readline().strip() for p in procs}
        assert sorted(said.values()) == ["busy", "held"]
        holder = next(p for p in procs if said[p.pid] == "held")
        with pytest.raises(DeviceError, match=f"process {holder.pid} holds"):
            FileLease("board1", tmp_path, grace_s=0.2).__enter__()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        mine = FileLease("board1", tmp_path)
        assert mine.acquire() is True  # the kernel dropped the dead holder's lock
        mine.release()
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
            p.stdout.close()


def test_a_worker_stopped_by_our_own_error_stops_the_farm_instead_of_hanging_it(tmp_path, monkeypatch):
    """A worker that dies holding a job (a store write failing, a bug) used to leave the other workers waiting
    for that job forever; now the farm ends and names the worker and the error."""
    import threading
    from pathlib import Path

    from llamaport.errors import StageError
    from llamaport.runtime_tests.farm import scheduler
    from llamaport.runtime_tests.farm.executor import OK, Outcome
    from llamaport.runtime_tests.farm.jobs import Job
    from llamaport.runtime_tests.farm.scheduler import FarmSettings, LocalFarm
    from llamaport.runtime_tests.farm.store import open_store
    from llamaport.targets.inventory import DeviceEntry, Inventory

    store = open_store(f"sqlite:///{tmp_path / 'farm.sqlite'}")
    devices = [DeviceEntry(id=name, target="linux-x86_64-ort") for name in ("a", "b")]
    for d in devices:
        store.upsert_device(d.id, d.target, d.transport, {})
        store.set_health(d.id, "good", "test")

    def attempt(store_, job, entry, n, timeout_s, node=None):
        if entry.id == "a":
            raise RuntimeError("disk I/O error")
        time.sleep(0.5)  # b is busy while a dies, so b's next wait sees a's job as running
        return Outcome(OK, result_new=True)
    monkeypatch.setattr(scheduler, "run_attempt", attempt)
    jobs = [Job(key=f"k{i}", run_id="r", bundle=Path("b"), bundle_sha256="0", runner="onnxruntime",
                target="linux-x86_64-ort", device=None, protocol={}, recipe="x", model="m") for i in range(4)]
    farm = LocalFarm(store, Inventory(devices=tuple(devices)), FarmSettings(lock_folder=tmp_path / "locks"))
    caught = []
    runner = threading.Thread(target=lambda: caught.append(pytest.raises(StageError, farm.run, jobs)), daemon=True)
    runner.start()
    runner.join(60)
    assert not runner.is_alive(), "the farm hung after a worker died"
    assert "worker a: RuntimeError: disk I/O error" in str(caught[0].value)
