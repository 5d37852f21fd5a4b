"""The three transports against real things: this host (local), a real sshd per device user on 127.0.0.1
(ssh), and the adb stand-in (adb; plus the real adb client with no phone attached). Each test reads the
device's files on this host to check what the transport did."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from llamaport.errors import DeviceError
from llamaport.targets.inventory import DeviceEntry
from llamaport.targets.transports.adb import AdbTransport
from llamaport.targets.transports.base import InfraError
from llamaport.targets.transports.local import LocalTransport
from llamaport.targets.transports.ssh import SshTransport
from tests.fixtures.sshd import ssh_farm  # noqa: F401  (the fixture)

ADB_STANDIN = Path(__file__).resolve().parents[1] / "fixtures" / "adb_standin" / "adb"
SERIAL = "emulator-5554"


class Device:
    """A transport and where its remote paths lie on this host."""

    def __init__(self, transport, host_root: Path | None = None):
        self.t = transport
        self.host_root = host_root

    def host(self, remote: str) -> Path:
        return self.host_root / remote.lstrip("/") if self.host_root else Path(remote)


@pytest.fixture(params=["local", "ssh", "adb"])
def device(request, tmp_path, monkeypatch):
    if request.param == "local":
        entry = DeviceEntry(id="here", target="linux-x86_64-xnnpack", python=sys.executable)
        yield Device(LocalTransport(entry, local_root=tmp_path / "devices"))
        return
    if request.param == "ssh":
        farm = request.getfixturevalue("ssh_farm")
        transport = SshTransport(farm.entries[0])
        yield Device(transport)
        transport.close()
        return
    phone = tmp_path / "phones" / SERIAL
    (phone / "data" / "local" / "tmp").mkdir(parents=True)
    monkeypatch.setenv("LLAMAPORT_ADB", str(ADB_STANDIN))
    monkeypatch.setenv("LLAMAPORT_ADB_STANDIN_ROOT", str(tmp_path / "phones"))
    entry = DeviceEntry(id="pixel", target="android-arm64-xnnpack", transport="adb", address=SERIAL)
    yield Device(AdbTransport(entry), host_root=phone)


def _bundle(root: Path, text: str) -> Path:
    (root / "model").mkdir(parents=True)
    (root / "check" / "prompts").mkdir(parents=True)
    (root / "model" / "model.pte").write_bytes(os.urandom(4096))
    (root / "check" / "prompts" / "p.txt").write_text(text)
    (root / "manifest.json").write_text('{"schema_version": 1}')
    (root / "README.md").write_text("# a bundle\n")
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _key() -> str:
    return hashlib.sha256(os.urandom(16)).hexdigest()


def _gone(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_put_bundle_copies_the_tree_once_and_replaces_an_incomplete_copy(device, tmp_path):
    bundle, key = _bundle(tmp_path / "bundle", "first"), _key()
    remote = device.t.put_bundle(bundle, key)
    copy = device.host(remote)
    assert remote.endswith(f"/bundles/{key}")
    assert {k: v for k, v in _tree(copy).items() if k != ".complete"} == _tree(bundle)
    assert not list(copy.parent.glob(".*partial"))  # the temporary name is gone after the rename

    stamp = (copy / "check" / "prompts" / "p.txt").stat().st_mtime_ns
    (bundle / "check" / "prompts" / "p.txt").write_text("second")
    assert device.t.put_bundle(bundle, key) == remote  # complete: not copied again
    assert (copy / "check" / "prompts" / "p.txt").read_text() == "first"
    assert (copy / "check" / "prompts" / "p.txt").stat().st_mtime_ns == stamp

    (copy / ".complete").unlink()  # as if a copy by an older llamaport had been cut short
    device.t.put_bundle(bundle, key)
    assert (copy / "check" / "prompts" / "p.txt").read_text() == "second"
    assert (copy / ".complete").is_file()


def test_put_file_and_fetch_round_trip_and_a_missing_file_is_the_jobs_fault(device, tmp_path):
    local = tmp_path / "runner.py"
    local.write_bytes(b"print('runner')\n" + bytes(range(256)))
    remote = device.t.put_file(local, "runner.py")
    assert device.host(remote).read_bytes() == local.read_bytes()
    device.t.fetch(remote, tmp_path / "back.py")
    assert (tmp_path / "back.py").read_bytes() == local.read_bytes()
    with pytest.raises(DeviceError, match="cannot fetch .*did the runner write it") as caught:
        device.t.fetch(remote + ".missing", tmp_path / "none")
    assert not isinstance(caught.value, InfraError)
    with pytest.raises(DeviceError, match="without '..'"):
        device.t.put_file(local, "../escape.py")


def test_run_returns_output_and_the_device_exit_code(device):
    result = device.t.run(["sh", "-c", "printf 'out\\377'; echo err >&2; exit 7"], timeout_s=30)
    assert (result.returncode, result.stdout) == (7, "out\ufffd")  # exact: the adb mark is stripped
    assert "err" in result.stderr
    ok = device.t.run(["sh", "-c", "echo \"$0\" in $(basename \"$PWD\")", "quoted arg"], timeout_s=30)
    assert ok.returncode == 0 and ok.stdout.startswith("quoted arg in ")


def test_a_run_past_its_timeout_raises_and_leaves_nothing_running(device):
    script = "echo $$ > run.pid; echo $$ > sleeper.pid; exec sleep 30"
    started = time.monotonic()
    with pytest.raises(InfraError, match=r"ran past 1\.5 s and it was stopped"):
        device.t.run(["sh", "-c", script], timeout_s=1.5)
    assert time.monotonic() - started < 8
    workdir = device.host(str(device.t.workdir))
    assert _gone(int((workdir / "sleeper.pid").read_text()))
    assert not (workdir / "run.pid").exists()


def test_kill_stale_ends_the_runner_an_interrupted_job_left(device):
    # Backgrounded with its output closed, so the run returns while the "runner" keeps going.
    device.t.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 </dev/null & echo $! > run.pid; echo $!"], timeout_s=30)
    workdir = device.host(str(device.t.workdir))
    pid = int((workdir / "run.pid").read_text())
    assert not _gone(pid, within_s=0.2)
    device.t.kill_stale()
    assert _gone(pid)
    assert not (workdir / "run.pid").exists()
    device.t.kill_stale()  # nothing left: a no-op


def test_probe_reports_python_runtimes_and_disk(device):
    facts = device.t.probe(timeout_s=30)
    expected = device.t.run([device.t.entry.python, "-c", "import platform; print(platform.python_version())"],
                            timeout_s=30).stdout.strip()
    assert facts["python"] == expected and re.fullmatch(r"\d+\.\d+\.\d+", expected)
    assert facts["free_disk_bytes"] > 0
    assert isinstance(facts["thermal_millicelsius"], dict)
    if device.t.kind == "local":  # the venv's interpreter: its runtime wheels are found
        assert facts["onnxruntime"] == importlib.metadata.version("onnxruntime")
        assert facts["executorch"] == importlib.metadata.version("executorch")


def test_a_bad_ssh_alias_is_an_infra_error(ssh_farm):
    config = ssh_farm.entries[0].ssh_config
    entry = DeviceEntry(id="ghost", target="linux-x86_64-xnnpack", transport="ssh", address="no-such-board.invalid",
                        ssh_config=config)
    with pytest.raises(InfraError, match=r"device ghost: ssh to no-such-board.invalid failed \(exit 255: .*"
                                         r"no-such-board.invalid"):
        SshTransport(entry).run(["true"], timeout_s=30)


def test_an_ssh_device_killed_mid_run_raises_and_its_command_ends(ssh_farm):
    entry = ssh_farm.entries[1]
    user = ssh_farm.user(entry.id)
    transport = SshTransport(entry)
    outcome = {}

    def job():
        try:
            outcome["result"] = transport.run(["python3", "-c", "import sys; sys.stdin.read()"], timeout_s=60)
        except InfraError as e:
            outcome["error"] = e
        outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=job)
    thread.start()
    remote = _wait_for(lambda: _user_pids(user, "python3"), "the remote python to start")
    killed = time.monotonic()
    ssh_farm.kill_sshd(entry.id)
    thread.join(timeout=20)
    assert "error" in outcome, outcome
    assert outcome["ended"] - killed < 5
    assert "exit 255" in str(outcome["error"]) and entry.id in str(outcome["error"])
    # Only sshd was killed: the command ended by itself, at the EOF on its stdin.
    assert all(_gone(pid) for pid in remote)
    ssh_farm.start(entry.id)
    try:  # the device is usable again after it comes back (the dead master connection is replaced)
        assert transport.run(["echo", "back"], timeout_s=30).stdout == "back\n"
    finally:
        transport.close()


def test_an_adb_serial_that_is_missing_or_offline_is_an_infra_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAPORT_ADB", str(ADB_STANDIN))
    monkeypatch.setenv("LLAMAPORT_ADB_STANDIN_ROOT", str(tmp_path))
    entry = DeviceEntry(id="pixel", target="android-arm64-xnnpack", transport="adb", address=SERIAL)
    with pytest.raises(InfraError, match=f"device pixel: .*adb: device '{SERIAL}' not found"):
        AdbTransport(entry).probe(timeout_s=30)
    (tmp_path / SERIAL).mkdir()
    (tmp_path / SERIAL / ".offline").touch()
    with pytest.raises(InfraError, match="device pixel: .*offline"):
        AdbTransport(entry).run(["true"], timeout_s=30)


def test_the_real_adb_client_without_a_phone_makes_probe_an_infra_error(tmp_path, monkeypatch):
    adb = shutil.which("adb")
    if adb is None:
        pytest.fail("the adb client is missing (apt-get install adb)")
    port = _free_port()
    # A private adb server on its own port and HOME, so no server on 5037 is started or touched.
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(port))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("LLAMAPORT_ADB", raising=False)
    before = set(_pids_named("adb"))
    entry = DeviceEntry(id="phone", target="android-arm64-xnnpack", transport="adb", address="NOPHONE123")
    try:
        with pytest.raises(InfraError, match="device phone: adb serial NOPHONE123 is not ready .*not found"):
            AdbTransport(entry).probe(timeout_s=30)
    finally:
        subprocess.run([adb, "-P", str(port), "kill-server"], capture_output=True, timeout=30)
        for pid in set(_pids_named("adb")) - before:  # only the server this test started
            if not _gone(pid, within_s=5):
                os.kill(pid, 9)


def _wait_for(found, what: str, within_s: float = 10.0):
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _user_pids(user: str, name: str) -> list[int]:
    done = subprocess.run(["pgrep", "-u", user, "-x", name], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split()]


def _pids_named(name: str) -> list[int]:
    done = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
