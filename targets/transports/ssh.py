"""An ssh board. Always the `ssh` binary, so the user's ssh_config, agents, ProxyJump and known_hosts apply;
tests pass their own config with `ssh -F`. Nothing but a POSIX sh, tar and cat is needed on the device
besides the Python that runs the device runner.

Workdir: entry.workdir, else /tmp/llamaport-<id> on the device. Every remote command goes through
`sh -c`, so the user's login shell (bash, zsh, fish) does not change how it is parsed. Exit code 255 is
ssh's own failure (InfraError); any other exit code came from the device command.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import tempfile
from pathlib import Path

from llamaport.errors import DeviceError
from llamaport.targets.transports.base import (InfraError, RunResult, check_bundle_args, check_file_name,
                                               kill_group, kill_pidfile_script, last_line, run_open_stdin,
                                               timed_out)
from llamaport.targets.transports.probe import parse_probe, probe_argv

SSH_FAILED = 255
TRANSFER_TIMEOUT_S = 3600.0  # a bundle copy; a dead link is found sooner by ServerAlive* (15 s)
SHORT_TIMEOUT_S = 60.0  # checks, kill_stale, a fetched result file


class SshTransport:
    kind = "ssh"

    def __init__(self, entry, local_root: Path | None = None):  # local_root: only the local transport uses it
        self.entry = entry
        self.device_id = entry.id
        self.workdir = entry.workdir or f"/tmp/llamaport-{entry.id}"

    def probe(self, timeout_s: float) -> dict:
        argv = probe_argv(self.entry.python, self.workdir)
        return parse_probe(self.device_id, self.entry.python, self._sh(shlex.join(argv), timeout_s))

    def put_bundle(self, bundle, sha256: str) -> str:
        check_bundle_args(self.device_id, bundle, sha256)
        final = f"{self.workdir}/bundles/{sha256}"
        if self._sh(f"test -f {shlex.quote(final + '/.complete')}", SHORT_TIMEOUT_S).returncode == 0:
            return final
        # Unpacked under a temporary name, marked complete, then renamed: a broken copy is never `final`.
        f, tmp = shlex.quote(final), shlex.quote(f"{self.workdir}/bundles/.{sha256}.partial")
        script = (f"mkdir -p {shlex.quote(self.workdir + '/bundles')} && rm -rf {tmp} && mkdir {tmp} && "
                  f"tar xof - -C {tmp} && touch {tmp}/.complete && rm -rf {f} && mv {tmp} {f} "
                  f"|| {{ rm -rf {tmp}; exit 1; }}")
        tar = subprocess.Popen(["tar", "cf", "-", "-C", str(bundle), "."], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        try:
            result = self._sh(script, TRANSFER_TIMEOUT_S, stdin=tar.stdout)
        finally:
            tar.stdout.close()  # so tar gets SIGPIPE rather than blocking if ssh ended first
            tar_err = tar.communicate()[1].decode("utf-8", errors="replace")
        if tar.returncode != 0:
            raise DeviceError(f"device {self.device_id}: reading {bundle} for the copy failed "
                              f"({last_line(tar_err)}); check the bundle folder")
        if result.returncode != 0:
            raise InfraError(f"device {self.device_id}: unpacking the bundle into {final} failed "
                             f"({last_line(result.stderr)}); check free space and tar on the device")
        return final

    def put_file(self, local, name: str) -> str:
        check_file_name(self.device_id, name)
        dest = f"{self.workdir}/{name}"
        d, tmp = shlex.quote(dest), shlex.quote(dest + ".partial")
        script = (f"mkdir -p {shlex.quote(os.path.dirname(dest))} && cat > {tmp} && chmod "
                  f"{stat.S_IMODE(os.stat(local).st_mode):o} {tmp} && mv {tmp} {d}")
        with open(local, "rb") as source:
            result = self._sh(script, TRANSFER_TIMEOUT_S, stdin=source)
        if result.returncode != 0:
            raise InfraError(f"device {self.device_id}: writing {dest} failed ({last_line(result.stderr)}); "
                             f"check free space and permissions of the workdir")
        return dest

    def run(self, argv: list[str], timeout_s: float) -> RunResult:
        w = shlex.quote(self.workdir)
        command = shlex.join(["sh", "-c", f"mkdir -p {w} && cd {w} && exec {shlex.join(argv)}"])
        try:
            result = run_open_stdin([*self._ssh_argv(), "--", command], timeout_s)
        except subprocess.TimeoutExpired as e:
            raise timed_out(self, argv, timeout_s) from e
        return self._checked(result)

    def fetch(self, remote_path: str, local) -> None:
        local = Path(local)
        partial = local.with_name(local.name + ".partial")
        with open(partial, "wb") as sink:
            result = self._sh(shlex.join(["cat", "--", remote_path]), SHORT_TIMEOUT_S, stdout=sink)
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            raise DeviceError(f"device {self.device_id}: cannot fetch {remote_path} "
                              f"({last_line(result.stderr)}); did the runner write it?")
        os.replace(partial, local)

    def kill_stale(self) -> None:
        self._sh(kill_pidfile_script(self.workdir), SHORT_TIMEOUT_S)

    def close(self) -> None:
        """End the shared master connection now rather than after ControlPersist (60 s)."""
        subprocess.run([*self._ssh_argv(), "-O", "exit"], capture_output=True, timeout=SHORT_TIMEOUT_S)

    def _sh(self, script: str, timeout_s: float, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE) -> RunResult:
        """A short sh script on the device with given stdin; ssh's own failure and timeouts raise."""
        argv = [*self._ssh_argv(), "--", shlex.join(["sh", "-c", script])]
        proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            kill_group(proc)
            raise InfraError(f"device {self.device_id}: ssh {self.entry.address} did not finish in "
                             f"{timeout_s:g} s; check the link to the device") from e
        text = (out or b"").decode("utf-8", errors="replace")
        return self._checked(RunResult(proc.returncode, text, err.decode("utf-8", errors="replace")))

    def _checked(self, result: RunResult) -> RunResult:
        if result.returncode == SSH_FAILED:
            config = f" -F {self.entry.ssh_config}" if self.entry.ssh_config else ""
            # A client multiplexed over a ControlMaster prints nothing when the master's connection drops.
            said = last_line(result.stderr) if result.stderr.strip() else "the connection was lost"
            raise InfraError(f"device {self.device_id}: ssh to {self.entry.address} failed (exit 255: {said}); "
                             f"check that `ssh{config} {self.entry.address} true` works and the device is up")
        return result

    def _ssh_argv(self) -> list[str]:
        config = ["-F", os.path.expanduser(self.entry.ssh_config)] if self.entry.ssh_config else []
        # ControlMaster: one TCP + auth handshake per device for the many short commands of a job.
        return ["ssh", *config, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
                "-o", "ServerAliveCountMax=3", "-o", "ControlMaster=auto",
                "-o", f"ControlPath={control_dir(self.device_id)}/%C", "-o", "ControlPersist=60",
                self.entry.address]


def control_dir(device_id: str) -> Path:
    """A 0700 folder of this user for the ControlMaster sockets: anyone who can reach a socket can run
    commands over the authenticated connection, so a folder that is not private is refused."""
    path = Path(tempfile.gettempdir()) / f"llamaport-ssh-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise InfraError(f"device {device_id}: the ssh control folder {path} is not a private (0700) folder "
                         f"owned by you; remove it and retry")
    return path
