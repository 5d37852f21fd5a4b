"""An Android phone over adb: always `adb -s SERIAL`, with the `adb` found on PATH (or the executable named by
LLAMAPORT_ADB, which tests point at a stand-in). Workdir: entry.workdir, else /data/local/tmp/llamaport-<id>
(the folder an unrooted shell user may write to; Android has no /tmp).

Exit codes: `adb shell` returns the device command's exit code only with shell protocol v2 (adbd of
Android 7 and newer); older adbd always return 0, and adb's own failures (device gone, offline) exit 1 as a
failing command may. So every shell command ends by printing `__llamaport_rc=<code>`: a run that printed it
ran, and its code is exact on any Android; a run that did not print it lost the device (InfraError).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from llamaport.errors import DeviceError
from llamaport.targets.transports.base import (InfraError, RunResult, check_bundle_args, check_file_name,
                                               kill_pidfile_script, last_line, run_open_stdin, timed_out)
from llamaport.targets.transports.probe import parse_probe, probe_argv

RC_MARK = "__llamaport_rc="
# The newline before the mark is ours (the command's output may not end with one); old pty shells send \r\n.
RC_TAIL = re.compile(r"\r?\n" + RC_MARK + r"(\d+)\r?\n?$")
TRANSFER_TIMEOUT_S = 3600.0
SHORT_TIMEOUT_S = 60.0
# adb's words for "the device or the adb server is not there": an infrastructure error, never the job's.
LINK_ERRORS = ("not found", "offline", "no devices", "unauthorized", "cannot connect", "closed", "protocol fault")


class AdbTransport:
    kind = "adb"

    def __init__(self, entry, local_root: Path | None = None):  # local_root: only the local transport uses it
        self.entry = entry
        self.device_id = entry.id
        self.workdir = entry.workdir or f"/data/local/tmp/llamaport-{entry.id}"
        self.adb = os.environ.get("LLAMAPORT_ADB") or shutil.which("adb") or "adb"

    def probe(self, timeout_s: float) -> dict:
        state = self._adb(["get-state"], timeout_s)
        if state.returncode != 0 or state.stdout.strip() != "device":
            raise InfraError(f"device {self.device_id}: adb serial {self.entry.address} is not ready "
                             f"({last_line(state.stderr + state.stdout)}); check `adb devices` (cable, "
                             f"authorization prompt on the phone)")
        facts = parse_probe(self.device_id, self.entry.python,
                            self.run(probe_argv(self.entry.python, self.workdir), timeout_s))
        return {**facts, "adb_state": "device"}

    def put_bundle(self, bundle, sha256: str) -> str:
        check_bundle_args(self.device_id, bundle, sha256)
        final = f"{self.workdir}/bundles/{sha256}"
        f, tmp = shlex.quote(final), shlex.quote(f"{self.workdir}/bundles/.{sha256}.partial")
        if self._shell(f"test -f {f}/.complete", SHORT_TIMEOUT_S).returncode == 0:
            return final
        # tmp must not exist: `adb push DIR DEST` copies into DEST/DIR when DEST is already a folder.
        self._shell_ok(f"mkdir -p {shlex.quote(self.workdir + '/bundles')} && rm -rf {tmp}", "preparing")
        self._push(Path(bundle), f"{self.workdir}/bundles/.{sha256}.partial")
        # Marked complete, then renamed: an interrupted push never leaves a folder named `final`.
        self._shell_ok(f"touch {tmp}/.complete && rm -rf {f} && mv {tmp} {f}", "finishing the copy to")
        return final

    def put_file(self, local, name: str) -> str:
        check_file_name(self.device_id, name)
        dest = f"{self.workdir}/{name}"
        self._shell_ok(f"mkdir -p {shlex.quote(os.path.dirname(dest))}", "preparing")
        self._push(Path(local), dest + ".partial")
        self._shell_ok(f"mv {shlex.quote(dest + '.partial')} {shlex.quote(dest)}", "finishing the copy to")
        return dest

    def run(self, argv: list[str], timeout_s: float) -> RunResult:
        w = shlex.quote(self.workdir)
        script = f"mkdir -p {w} && cd {w} && {shlex.join(argv)}"
        try:
            return self._marked(run_open_stdin(self._shell_argv(script), timeout_s))
        except subprocess.TimeoutExpired as e:
            raise timed_out(self, argv, timeout_s) from e

    def fetch(self, remote_path: str, local) -> None:
        local = Path(local)
        partial = local.with_name(local.name + ".partial")
        result = self._adb(["pull", remote_path, str(partial)], TRANSFER_TIMEOUT_S)
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            self._raise_if_link(result, f"pulling {remote_path}")
            raise DeviceError(f"device {self.device_id}: cannot fetch {remote_path} "
                              f"({last_line(result.stderr + result.stdout)}); did the runner write it?")
        os.replace(partial, local)

    def kill_stale(self) -> None:
        self._shell(kill_pidfile_script(self.workdir), SHORT_TIMEOUT_S)

    def close(self) -> None:
        """Nothing is held open between calls (the adb server is the user's, and outlives llamaport)."""

    def _push(self, local: Path, remote: str) -> None:
        result = self._adb(["push", str(local), remote], TRANSFER_TIMEOUT_S)
        if result.returncode != 0:
            raise InfraError(f"device {self.device_id}: adb push {local} {remote} failed "
                             f"({last_line(result.stderr + result.stdout)}); check free space on the device")

    def _shell_ok(self, script: str, doing: str) -> None:
        result = self._shell(script, SHORT_TIMEOUT_S)
        if result.returncode != 0:
            raise InfraError(f"device {self.device_id}: {doing} {self.workdir} failed "
                             f"({last_line(result.stderr + result.stdout)}); check the workdir's permissions")

    def _shell(self, script: str, timeout_s: float) -> RunResult:
        return self._marked(self._adb(["shell", _with_rc(script)], timeout_s))

    def _shell_argv(self, script: str) -> list[str]:
        return [self.adb, "-s", self.entry.address, "shell", _with_rc(script)]

    def _adb(self, args: list[str], timeout_s: float) -> RunResult:
        argv = [self.adb, "-s", self.entry.address, *args]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise InfraError(f"device {self.device_id}: `{shlex.join(argv)}` did not finish in {timeout_s:g} s; "
                             f"check `adb devices`") from e
        except OSError as e:
            raise InfraError(f"device {self.device_id}: cannot run {self.adb} ({e}); install adb "
                             f"(apt-get install adb) or set LLAMAPORT_ADB") from e
        return RunResult(done.returncode, done.stdout.decode("utf-8", errors="replace"),
                         done.stderr.decode("utf-8", errors="replace"))

    def _marked(self, result: RunResult) -> RunResult:
        """The device command's exit code from our mark; no mark means adb lost the device."""
        match = RC_TAIL.search(result.stdout)
        if match is None:
            raise InfraError(f"device {self.device_id}: adb -s {self.entry.address} shell ended without the "
                             f"command's exit code ({last_line(result.stderr + result.stdout)}); check "
                             f"`adb devices`")
        return RunResult(int(match.group(1)), result.stdout[:match.start()], result.stderr)

    def _raise_if_link(self, result: RunResult, doing: str) -> None:
        said = (result.stderr + result.stdout).lower()
        if any(words in said for words in LINK_ERRORS) and "no such file" not in said:
            raise InfraError(f"device {self.device_id}: {doing} failed ({last_line(result.stderr)}); "
                             f"check `adb devices`")


def _with_rc(script: str) -> str:
    # In a subshell so that an `exit` in the script cannot skip the mark.
    return f"( {script} ); printf '\\n{RC_MARK}%s\\n' \"$?\""
