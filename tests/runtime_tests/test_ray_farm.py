"""The farm across hosts on a real Ray cluster of two nodes on this machine, each started by
`llamaport farm agent` and advertising a different device: jobs land on the node that holds their device,
and killing that node mid-job ends in a retry elsewhere (or a stored `lost` attempt), never a silent loss,
never a doubled result."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from llamaport.compile.pipeline import DEFAULT_MODEL
from llamaport.farm import FarmRunRequest, run_farm
from llamaport.runtime_tests.farm.store import open_store

pytestmark = pytest.mark.slow
# Fast node-death detection (the defaults take up to 55 s): what a farm's head would set too.
FAST_HEALTH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
               "RAY_health_check_failure_threshold": "3", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayCluster:
    """Two farm agents; every Ray process they start is found by the session folder in its command line
    and stopped by its own pid."""

    def __init__(self, inventory: Path, tmp: Path):
        self.port, self.tmp, self.inventory = _free_port(), tmp, inventory
        self.temp_dir = Path(f"/tmp/llp-ray-{os.getpid()}-{self.port}")  # Ray's socket paths must stay short
        self.agents: dict[str, subprocess.Popen] = {}

    def start(self, name: str, device: str, head: bool) -> None:
        argv = [sys.executable, "-m", "llamaport", "farm", "agent", "--inventory", str(self.inventory),
                "--device", device, "--num-cpus", "1"]
        argv += ["--port", str(self.port), "--temp-dir", str(self.temp_dir)] if head else ["--address", self.address]
        log = open(self.tmp / f"{name}.log", "w")
        self.agents[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                             env={**os.environ, **FAST_HEALTH})

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_for(self, nodes: int, timeout_s: float = 90) -> dict[str, str]:
        """{device id: node id} once `nodes` live nodes advertise devices."""
        code = ("import json, ray; ray.init(address='%s', logging_level='ERROR'); print(json.dumps({k[7:]: n['NodeID'] "
                "for n in ray.nodes() if n['Alive'] for k in n['Resources'] if k.startswith('device:')}))") % self.address
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **FAST_HEALTH})
            if out.returncode == 0 and len(__import__("json").loads(out.stdout.strip().splitlines()[-1])) >= nodes:
                return __import__("json").loads(out.stdout.strip().splitlines()[-1])
            time.sleep(1)
        raise AssertionError(f"Ray nodes did not come up: {(self.tmp / 'head.log').read_text()[-2000:]}")

    def kill(self, name: str) -> None:
        """SIGKILL the agent's whole process group: its raylet and workers die with no goodbye."""
        os.killpg(self.agents[name].pid, signal.SIGKILL)
        self.agents[name].wait()

    def stop(self) -> None:
        for proc in self.agents.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        for _ in range(20):  # workers live in their own sessions: find them by our session folder
            pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _mentions(int(p), str(self.temp_dir))]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        subprocess.run(["rm", "-rf", str(self.temp_dir)])


def _mentions(pid: int, text: str) -> bool:
    try:
        return text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.fixture
def cluster(tmp_path):
    inventory = tmp_path / "inventory.toml"
    inventory.write_text("".join(f'[[device]]\nid = "{d}"\ntarget = "linux-x86_64-ort"\ntransport = "local"\n'
                                 f'python = "{sys.executable}"\nworkdir = "{tmp_path / d}"\n' for d in ("dev-a", "dev-b")))
    c = RayCluster(inventory, tmp_path)
    try:
        c.start("head", "dev-a", head=True)
        c.wait_for(1)
        c.start("second", "dev-b", head=False)
        c.nodes = c.wait_for(2)
        yield c
    finally:
        c.stop()


def test_jobs_land_on_the_node_that_holds_their_device_and_a_killed_node_loses_nothing(cluster, bundle, tmp_path):
    bundles = (bundle(DEFAULT_MODEL, "ortgenai-cpu-fp32").bundle, bundle(DEFAULT_MODEL, "ortgenai-cpu-8da4w-g32").bundle)
    db = f"sqlite:///{tmp_path / 'farm.sqlite'}"
    small = {"decode_tokens": 16, "warmup": 0, "repeats": 1}
    run_id, outcome, _ = run_farm(FarmRunRequest(bundles=bundles, devices=("dev-a", "dev-b"), inventory=cluster.inventory,
                                                 db=db, run_id="placed", ray_address=cluster.address, **small))
    store = open_store(db)
    assert outcome.results == 4 and outcome.unfinished == [], [(a.device_id, a.outcome, a.detail[:300]) for a in store.attempts()]
    for a in store.attempts(run_id="placed"):
        assert a.outcome == "ok" and a.detail == f"ran on Ray node {cluster.nodes[a.device_id]}"

    store_watch = open_store(db)

    def kill_second_node_when_its_job_starts():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(a.device_id == "dev-b" and a.outcome is None for a in store_watch.attempts(run_id="killed")):
                time.sleep(0.3)  # inside the job: 200 timed generations take seconds
                cluster.kill("second")
                return
            time.sleep(0.05)
    killer = threading.Thread(target=kill_second_node_when_its_job_starts)
    killer.start()
    run_id, outcome, _ = run_farm(FarmRunRequest(bundles=bundles, devices=("dev-a", "dev-b"), inventory=cluster.inventory,
                                                 db=db, run_id="killed", ray_address=cluster.address,
                                                 decode_tokens=64, warmup=1, repeats=200))
    killer.join()
    attempts = store.attempts(run_id="killed")
    failed = [a for a in attempts if a.outcome != "ok"]
    assert failed and all(a.device_id in ("dev-b", "-") for a in failed)
    assert {a.outcome for a in failed} <= {"lost", "infra_error"}
    rows = store.results(run_id="killed")
    assert len({r.job_key for r in rows}) == len(rows)  # nothing doubled
    # every job has a result, or a stored reason why not: never a silent loss
    planned = {a.job_key for a in attempts}
    assert planned == {r.job_key for r in rows} | {a.job_key for a in attempts if a.outcome == "lost"}
    assert all(r.device_id == "dev-a" for r in rows if r.job_key in {a.job_key for a in failed})
