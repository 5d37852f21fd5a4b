"""The transport contract every device kind honours. The device side runs one self-contained Python file
(llamaport.runtime_tests.device, zipped into device_runner.pyz) beside a bundle; a transport only moves files and runs commands.

Failures are classified where they happen: a transport raises InfraError for anything that is the
device's or the link's fault (ssh exit 255, adb offline, a timeout, a transfer that broke): the farm
retries those on another device. A command that ran and failed returns its exit code and output
normally: the caller reads the runner's own error line, a job error that is never retried.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from llamaport.errors import DeviceError


class InfraError(DeviceError):
    """The device or the link failed, not the job: retried on another device, the device marked unknown."""


@dataclass(frozen=True)
class RunResult:
    returncode: int
    stdout: str
    stderr: str


class Transport(Protocol):
    device_id: str
    kind: str  # "local" | "ssh" | "adb"

    def probe(self, timeout_s: float) -> dict:
        """Reachable and usable: facts such as python and runtime versions, free disk, thermal state and CPU
        governor where the device exposes them. Raises InfraError when the device cannot be reached."""

    def put_bundle(self, bundle, sha256: str) -> str:
        """The bundle folder on the device at <workdir>/bundles/<sha256>/ (copied only when absent or
        incomplete; written under a temporary name and renamed). Returns its path on the device."""

    def put_file(self, local, name: str) -> str:
        """One file into <workdir>/<name> (the device runner). Returns its path on the device."""

    def run(self, argv: list[str], timeout_s: float) -> RunResult:
        """Run argv on the device with stdin kept open as a pipe (the device runner exits when it closes, so
        a dropped connection leaves nothing running). Timeout or a broken link: InfraError."""

    def fetch(self, remote_path: str, local) -> None:
        """Copy one file back from the device."""

    def kill_stale(self) -> None:
        """End any device runner a previous, interrupted job left running (by <workdir>/run.pid)."""


# --- Helpers shared by the transports (the contract above is what callers use) ---------------------------


def run_open_stdin(argv: list[str], timeout_s: float, *, cwd=None, env=None) -> RunResult:
    """Run a local client process (the runner itself, ssh or adb) with stdin held open as a pipe until it
    exits: the device runner ends at stdin EOF, so stdin must close only when the link does. (communicate()
    would close stdin at once when given no input, so the pipes are drained by threads instead.)
    On timeout the process group is killed and subprocess.TimeoutExpired raised: the caller cleans up."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=cwd, env=env, start_new_session=True)
    out: list[bytes] = []
    err: list[bytes] = []
    readers = [threading.Thread(target=_drain, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=_drain, args=(proc.stderr, err), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        returncode = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        # Not waiting for the readers: an ssh ControlMaster holds the client's pipes (passed to it over the
        # control socket) until the remote command ends, which is the caller's kill_stale to bring about.
        proc.stdin.close()
        raise
    proc.stdin.close()
    for reader in readers:
        reader.join(timeout=5)  # bounded for the same reason, should a master keep a pipe a little longer
    return RunResult(returncode, _text(out), _text(err))


def timed_out(transport, argv: list[str], timeout_s: float) -> InfraError:
    """After the local client was killed for running past its timeout: stop the device runner too (the remote
    command may outlive its client) and describe both; a failing clean-up must not hide the timeout."""
    try:
        transport.kill_stale()
        cleanup = "it was stopped"
    except DeviceError as e:
        cleanup = f"stopping it failed too ({e})"
    return InfraError(f"device {transport.device_id}: `{shlex.join(argv)}` ran past {timeout_s:g} s and "
                      f"{cleanup}; raise the timeout if the bundle is that slow on this device")


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a client started with start_new_session=True, and whatever it spawned in its group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _drain(stream, chunks: list[bytes]) -> None:
    for chunk in iter(lambda: stream.read1(65536), b""):
        chunks.append(chunk)


def _text(chunks: list[bytes]) -> str:
    # A runtime may print raw byte-level token pieces; they must not break reading the result line.
    return b"".join(chunks).decode("utf-8", errors="replace")


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def check_bundle_args(device_id: str, bundle: Path, sha256: str) -> None:
    if not Path(bundle).is_dir():
        raise DeviceError(f"device {device_id}: bundle {bundle} is not a folder; build it first (llamaport build)")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", sha256):
        raise DeviceError(f"device {device_id}: bundle key {sha256!r} must be a plain name (the bundle's sha256)")


def check_file_name(device_id: str, name: str) -> None:
    """A file name under the workdir: relative and without '..', so a put never writes outside it."""
    parts = PurePosixPath(name).parts
    if not name or PurePosixPath(name).is_absolute() or ".." in parts:
        raise DeviceError(f"device {device_id}: file name {name!r} must be a path relative to the workdir "
                          f"without '..'")


def kill_pidfile_script(workdir: str) -> str:
    """POSIX sh (also Android's mksh and busybox) that ends the process named in <workdir>/run.pid, politely
    first, then by SIGKILL after 2 s, and removes the file. The runner deletes run.pid on a clean exit, so a
    file that is left names an interrupted run; it is read right before the next job on the same device (one
    job per device), which keeps the window for the pid to have been reused small."""
    pidfile = shlex.quote(f"{workdir}/run.pid")
    return (f"f={pidfile}; [ -f \"$f\" ] || exit 0; pid=$(cat \"$f\"); "
            "if [ -n \"$pid\" ] && kill -0 \"$pid\" 2>/dev/null; then kill \"$pid\" 2>/dev/null; i=0; "
            "while kill -0 \"$pid\" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; "
            "kill -9 \"$pid\" 2>/dev/null; fi; rm -f \"$f\"; exit 0")
