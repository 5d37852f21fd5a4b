"""Side toolchains: packages a backend needs that cannot live in the main environment because their pins
conflict with it. Each is pip-installed once per machine into its own folder (`pip install --target`, no
dependencies: it runs on the main venv's numpy and friends), pruned to what the backend imports, and proven by
a self-test before the folder is used. A process that does the backend's work APPENDS the folder to sys.path
(activate_toolchain), so every package the main venv has wins and only the missing ones come from the folder.

Imports only the standard library: reading the table or finding the folder costs nothing."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from llamaport.errors import ConfigError

MARKER = "toolchain.json"  # written last, inside the folder before it is renamed into place: it means "ready"
PATH_ENV = "LLAMAPORT_TOOLCHAIN_PATH"
ROOT_ENV = "LLAMAPORT_TOOLCHAINS"
STEP_TIMEOUT_S = 900


@dataclass(frozen=True)
class Toolchain:
    id: str
    requirements: tuple[str, ...]  # pip requirement specifiers, installed with --no-deps
    keep: tuple[str, ...]          # top-level entries of the install folder to keep; the rest is deleted
    self_test: str                 # "module:function" -> dict, run in a child with the folder on sys.path
    purpose: str
    remove_when: str


TOOLCHAINS = {
    "arm-ethos-u": Toolchain(
        id="arm-ethos-u",
        # executorch 1.5.1's `ethos-u` extra pins. Its third pin, ml_dtypes==0.5.1, is left out on purpose: the
        # main venv's ml_dtypes 0.6.0 (onnx needs >=0.5.4) and numpy 2.4 serve tosa-tools, which declares
        # numpy<2.2; the self-test proves the combination gives bit-exact results.
        requirements=("ethos-u-vela==5.1.0", "tosa-tools==2026.5.0"),
        # 47 MB of the 205 MB install. tosa-tools also installs generic top-level packages (tests, runner,
        # generator, serializer, checker, ...), binaries and static libraries that nothing imports.
        # tosa_types: tosa_serializer.numpy_utils imports it (28 KB), so every kept package imports cleanly.
        keep=("ethosu", "ethos_u_vela-5.1.0.dist-info", "tosa_serializer", "tosa", "tosa_reference_model",
              "tosa_types", "tosa_tools-2026.5.0.dist-info"),
        self_test="llamaport.compile.arm_selftest:run",
        purpose="Vela and the TOSA serializer/reference model for ExecuTorch's Arm Ethos-U backend",
        remove_when="tosa-tools accepts numpy>=2.2 and ml_dtypes>=0.5.4, so it can live in the main venv",
    ),
}


def announce(message: str) -> None:
    """First-use creation takes seconds to minutes: shown on the terminal (a WARNING-level log line) even
    without --verbose, one line per step."""
    import logging

    logging.getLogger("llamaport.toolchains").warning(message)


def toolchain_root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or Path.home() / ".cache" / "llamaport" / "toolchains")


def toolchain_dir(tc: Toolchain) -> Path:
    """One folder per content: a changed pin, keep list or Python version gets a new folder, never a stale one."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    digest = hashlib.sha256(json.dumps([list(tc.requirements), list(tc.keep), python]).encode()).hexdigest()
    return toolchain_root() / f"{tc.id}-{digest[:12]}"


def ensure_toolchain(tc_id: str, progress: Callable[[str], None] = lambda msg: None) -> Path:
    """The toolchain's folder, created and self-tested on first use. Raises ConfigError (one line) if it cannot be."""
    tc = TOOLCHAINS[tc_id]
    final = toolchain_dir(tc)
    if (final / MARKER).is_file():
        return final
    root = final.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f"{tc.id}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
            if (final / MARKER).is_file():  # another process built it while this one waited
                return final
            return _create(tc, final, progress)
    except OSError as e:
        raise ConfigError(f"toolchain {tc.id}: cannot write {root} ({e.strerror or e}); "
                          f"set {ROOT_ENV} to a writable folder") from e


def toolchain_env(path: Path | str) -> dict:
    """The environment for a child process that runs with the toolchain (it calls activate_toolchain first)."""
    return {**os.environ, PATH_ENV: str(path)}


def activate_toolchain() -> str | None:
    """First thing in a child started with toolchain_env: APPEND the folder to sys.path, so the main venv's
    numpy/ml_dtypes win over anything the folder might shadow."""
    path = os.environ.get(PATH_ENV)
    if path and path not in sys.path:
        sys.path.append(path)
    return path or None


# Runs the self-test in a child with the new folder appended to sys.path, exactly as a real user of it would.
_SELF_TEST_CHILD = """
import json, sys
from llamaport.targets.toolchains import activate_toolchain
from llamaport.entry import load_entry
activate_toolchain()
result = load_entry(sys.argv[1])()
with open(sys.argv[2], "w") as f:
    json.dump(result, f)
"""


def _create(tc: Toolchain, final: Path, progress: Callable[[str], None]) -> Path:
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a run that died; safe, this process holds the lock
    progress(f"creating toolchain {tc.id} (first use) in {final} ...")
    start = time.monotonic()
    try:
        _run_step(tc, "pip install", [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--no-deps",
                                      "--disable-pip-version-check", "--no-input", "--target", str(tmp),
                                      *tc.requirements], os.environ)
        install_s = time.monotonic() - start
        _prune(tc, tmp)
        progress(f"self-test of {tc.id} ...")
        result_file = tmp / ".self_test.json"
        test_start = time.monotonic()
        _run_step(tc, "self-test", [sys.executable, "-c", _SELF_TEST_CHILD, tc.self_test, str(result_file)],
                  toolchain_env(tmp))
        self_test_s = time.monotonic() - test_start
        result = json.loads(result_file.read_text())
        result_file.unlink()
        marker = {"id": tc.id, "requirements": list(tc.requirements), "keep": list(tc.keep),
                  "python": f"{sys.version_info.major}.{sys.version_info.minor}",
                  "install_s": round(install_s, 1), "self_test_s": round(self_test_s, 1), "self_test": result,
                  "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)  # a folder without its marker was damaged by hand
        os.rename(tmp, final)  # atomic: readers see no folder or a complete one
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    progress(f"toolchain {tc.id} ready in {time.monotonic() - start:.0f} s")
    return final


def _run_step(tc: Toolchain, step: str, command: list[str], env: dict) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=STEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"toolchain {tc.id}: {step} took over {STEP_TIMEOUT_S} s; {_advice(step)}") from None
    if done.returncode != 0:
        log = toolchain_root() / f"{tc.id}-{step.replace(' ', '-')}.log"  # the full output, for whoever digs
        log.write_text(done.stdout + done.stderr)
        what = _last_line(done.stdout + done.stderr) or f"exit code {done.returncode} and no output"
        raise ConfigError(f"toolchain {tc.id}: {step} failed: {what}; "
                          f"{_advice(step)} (full output: {log})")


def _prune(tc: Toolchain, folder: Path) -> None:
    missing = [name for name in tc.keep if not (folder / name).exists()]
    if missing:  # a new release moved things: fail here rather than in the middle of a build
        raise ConfigError(f"toolchain {tc.id}: pip install did not create {', '.join(missing)}; "
                          f"the pins and the keep list in llamaport/targets/toolchains.py disagree")
    for entry in folder.iterdir():
        if entry.name not in tc.keep:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def _last_line(output: str) -> str:
    """The line that says what went wrong: the last one that is not pip's upgrade notice or blank."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip() and not ln.lstrip().startswith("[notice]")]
    return lines[-1][:300] if lines else ""


def _advice(step: str) -> str:
    if step == "pip install":
        return (f"check access to the package registry (pip's index, PIP_INDEX_URL) "
                f"or set {ROOT_ENV} to a writable folder")
    return "the toolchain does not work with this environment's packages; re-check its pins against the main venv"
