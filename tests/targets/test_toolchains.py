"""Side toolchains (targets/toolchains.py): created once per machine under a lock, only after a self-test passes,
with a one-line error and nothing left behind when a step fails. The fast tests install a tiny hand-made wheel
with the real pip; the slow one creates the real Arm Ethos-U toolchain."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import subprocess
import sys
import textwrap
import threading
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from llamaport.errors import ConfigError
from llamaport.targets import toolchains
from llamaport.targets.toolchains import TOOLCHAINS, Toolchain, ensure_toolchain, toolchain_dir

FAKE_PACKAGE = "llamaport_fake_toolchain_pkg"
FAKE_CODE = """
import os

def self_test():
    # one line per creation, so the test can count how many times the toolchain was built
    with open(os.environ["FAKE_TOOLCHAIN_COUNTER"], "a") as f:
        f.write("created\\n")
    return {"exact": True}

def failing_self_test():
    raise RuntimeError("fake self-test says the outputs differ")
"""


def _write_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel, written by hand: no build backend, no network."""
    dist = f"{FAKE_PACKAGE}-0.1"
    files = {
        f"{FAKE_PACKAGE}/__init__.py": FAKE_CODE,
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {FAKE_PACKAGE}\nVersion: 0.1\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(text.encode())}" for name, text in files.items()]
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record + [f"{dist}.dist-info/RECORD,,"]) + "\n"
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return wheel


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A registered fake toolchain (id "fake") whose requirement is a local wheel, in a tmp toolchain root."""
    monkeypatch.setenv("LLAMAPORT_TOOLCHAINS", str(tmp_path / "toolchains"))
    monkeypatch.setenv("FAKE_TOOLCHAIN_COUNTER", str(tmp_path / "created.txt"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # never touch the network for a local wheel
    wheel = _write_wheel(tmp_path)

    def register(requirement=str(wheel), self_test=f"{FAKE_PACKAGE}:self_test"):
        tc = Toolchain(id="fake", requirements=(requirement,), keep=(FAKE_PACKAGE, f"{FAKE_PACKAGE}-0.1.dist-info"),
                       self_test=self_test, purpose="test", remove_when="never")
        monkeypatch.setitem(TOOLCHAINS, "fake", tc)
        return tc
    return register


def _creations(tmp_path: Path) -> int:
    counter = tmp_path / "created.txt"
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def _folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []


def test_first_use_installs_prunes_self_tests_and_marks_the_folder(fake, tmp_path):
    tc = fake()
    messages = []
    folder = ensure_toolchain("fake", progress=messages.append)
    assert folder == toolchain_dir(tc) and folder.parent == tmp_path / "toolchains"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*tc.keep, "toolchain.json"])  # pruned
    marker = json.loads((folder / "toolchain.json").read_text())
    assert marker["id"] == "fake" and marker["self_test"] == {"exact": True}
    assert marker["install_s"] >= 0 and marker["self_test_s"] >= 0 and marker["created"]
    assert _creations(tmp_path) == 1
    assert messages[0].startswith("creating toolchain fake (first use)")
    assert messages[-1].startswith("toolchain fake ready")
    assert _folders(folder.parent) == [folder.name]  # the tmp folder was renamed, not copied


def test_a_pip_failure_is_one_line_naming_the_toolchain_and_step_and_leaves_no_folder(fake, tmp_path):
    fake(requirement="llamaport-no-such-package==0.0.1")  # PIP_NO_INDEX: pip fails at once, offline
    with pytest.raises(ConfigError) as err:
        ensure_toolchain("fake")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("toolchain fake: pip install failed:")
    assert "llamaport-no-such-package" in message and "package registry" in message
    assert _folders(tmp_path / "toolchains") == []


def test_a_failing_self_test_is_one_line_with_its_error_and_leaves_no_folder(fake, tmp_path):
    fake(self_test=f"{FAKE_PACKAGE}:failing_self_test")
    with pytest.raises(ConfigError) as err:
        ensure_toolchain("fake")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("toolchain fake: self-test failed: RuntimeError: fake self-test says the outputs differ")
    assert _folders(tmp_path / "toolchains") == []


def test_the_marker_makes_later_calls_return_at_once_without_pip(fake, monkeypatch):
    tc = fake()
    folder = toolchain_dir(tc)
    folder.mkdir(parents=True)
    (folder / "toolchain.json").write_text("{}")

    def no_subprocess(*args, **kwargs):
        raise AssertionError("a toolchain with its marker must not be installed again")
    monkeypatch.setattr(toolchains.subprocess, "run", no_subprocess)
    assert ensure_toolchain("fake") == folder


def test_an_unwritable_root_says_to_set_the_root(fake, tmp_path, monkeypatch):
    fake()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("LLAMAPORT_TOOLCHAINS", str(blocker / "toolchains"))  # under a file: cannot be created
    with pytest.raises(ConfigError, match="toolchain fake: cannot write .*set LLAMAPORT_TOOLCHAINS to a writable"):
        ensure_toolchain("fake")


def test_concurrent_threads_create_it_once(fake, tmp_path):
    fake()
    results, errors = [], []

    def call():
        try:
            results.append(ensure_toolchain("fake"))
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(e)
    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1 and len(results) == 3
    assert _creations(tmp_path) == 1


def test_concurrent_processes_create_it_once(fake, tmp_path):
    tc = fake()
    # Each child registers the same fake toolchain (the parent's monkeypatch does not reach it) and ensures it.
    child = textwrap.dedent(f"""
        from llamaport.targets import toolchains
        toolchains.TOOLCHAINS["fake"] = toolchains.Toolchain(**{json.dumps(tc.__dict__)})
        print(toolchains.ensure_toolchain("fake"))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs == [str(toolchain_dir(tc))] * 2
    assert _creations(tmp_path) == 1


def test_arm_pins_are_executorchs_ethos_u_extra():
    """A new executorch may pin other Arm tools: then the toolchain's pins and keep list must be re-checked."""
    extra = [r.split(";")[0].strip().replace(" ", "") for r in metadata.requires("executorch")
             if 'extra == "ethos-u"' in r]
    assert sorted(TOOLCHAINS["arm-ethos-u"].requirements) == sorted(r for r in extra if not r.startswith("ml_dtypes"))


@pytest.mark.slow
def test_the_real_arm_toolchain_is_exact_small_and_leaks_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAPORT_TOOLCHAINS", str(tmp_path))
    folder = ensure_toolchain("arm-ethos-u", progress=print)
    marker = json.loads((folder / "toolchain.json").read_text())
    print("toolchain.json:", json.dumps(marker))
    assert marker["self_test"]["max_abs_diff"] == 0 and marker["self_test"]["exact_pct"] == 100.0
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"size: {size / 1e6:.1f} MB")
    assert size < 100e6
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    # Only processes that activate it can import it: a fresh interpreter of the main environment cannot
    # (this pytest process may have activated it already, in a build's reference-model check).
    fresh = subprocess.run([sys.executable, "-c", "import importlib.util, sys; "
                            "sys.exit(importlib.util.find_spec('tosa_serializer') is not None)"], env=_without_toolchain())
    assert fresh.returncode == 0


def _without_toolchain() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("LLAMAPORT_TOOLCHAIN_PATH", "PYTHONPATH")}
