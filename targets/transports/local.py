"""This host as a device: the runner runs as a child process, files are copied with shutil. The same contract
as the remote transports, so the farm treats the host like any board (and tests can compare them)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from llamaport.errors import DeviceError
from llamaport.targets.transports.base import (InfraError, RunResult, check_bundle_args, check_file_name,
                                               run_open_stdin, timed_out)
from llamaport.targets.transports.probe import parse_probe, probe_argv

DEFAULT_ROOT = Path("~/.cache/llamaport/devices")


class LocalTransport:
    """Workdir: entry.workdir, else <local_root>/<id> (local_root defaults to ~/.cache/llamaport/devices)."""

    kind = "local"

    def __init__(self, entry, local_root: Path | None = None):
        self.entry = entry
        self.device_id = entry.id
        root = Path(local_root) if local_root is not None else DEFAULT_ROOT
        self.workdir = Path(entry.workdir or root / entry.id).expanduser()

    def probe(self, timeout_s: float) -> dict:
        return parse_probe(self.device_id, self.entry.python,
                           self.run(probe_argv(self.entry.python, str(self.workdir)), timeout_s))

    def put_bundle(self, bundle, sha256: str) -> str:
        check_bundle_args(self.device_id, bundle, sha256)
        final = self.workdir / "bundles" / sha256
        if (final / ".complete").is_file():
            return str(final)
        partial = final.parent / f".{sha256}.partial"
        shutil.rmtree(partial, ignore_errors=True)  # what an interrupted copy left
        try:
            shutil.copytree(bundle, partial, symlinks=True)
            (partial / ".complete").touch()
            shutil.rmtree(final, ignore_errors=True)  # an incomplete copy from an older llamaport
            os.rename(partial, final)
        except OSError as e:
            shutil.rmtree(partial, ignore_errors=True)
            raise InfraError(f"device {self.device_id}: copying {bundle} to {final} failed ({e}); "
                             f"check free space in {self.workdir}") from e
        return str(final)

    def put_file(self, local, name: str) -> str:
        check_file_name(self.device_id, name)
        dest = self.workdir / name
        partial = dest.with_name(dest.name + ".partial")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, partial)
            os.chmod(partial, os.stat(local).st_mode & 0o777)
            os.rename(partial, dest)
        except OSError as e:
            raise InfraError(f"device {self.device_id}: copying {local} to {dest} failed ({e})") from e
        return str(dest)

    def run(self, argv: list[str], timeout_s: float) -> RunResult:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            return run_open_stdin(argv, timeout_s, cwd=self.workdir)
        except subprocess.TimeoutExpired as e:
            raise timed_out(self, argv, timeout_s) from e
        except OSError as e:  # the program itself is missing: the device is not set up for it
            raise InfraError(f"device {self.device_id}: cannot start `{argv[0]}` ({e}); check the inventory's "
                             f"`python` for this device") from e

    def fetch(self, remote_path: str, local) -> None:
        local = Path(local)
        partial = local.with_name(local.name + ".partial")
        try:
            shutil.copyfile(Path(remote_path), partial)
        except OSError as e:
            raise DeviceError(f"device {self.device_id}: cannot fetch {remote_path} ({e}); did the runner "
                              f"write it?") from e
        os.replace(partial, local)

    def kill_stale(self) -> None:
        pidfile = self.workdir / "run.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return  # no interrupted run left a pid (or the file was half written: nothing to trust)
        _terminate(pid)
        pidfile.unlink(missing_ok=True)

    def close(self) -> None:
        """Nothing is held open between calls (ssh's close ends its master connection)."""


def _terminate(pid: int) -> None:
    """SIGTERM, then SIGKILL after 2 s, as kill_pidfile_script does on remote devices."""
    for sig, wait_s in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 0.0)):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended; its parent reaps it
    except OSError:
        pass
    try:
        os.kill(pid, 0)  # no /proc (macOS), or it vanished just now
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
