"""One installed namespace: a wheel installs `llamaport` and nothing else, and both the wheel and the
editable install run the CLI from a folder whose compile.py, targets.py and quantize.py would shadow
generic top-level packages."""

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from llamaport.compile.pipeline import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[2]
SHADOWS = ("compile.py", "targets.py", "quantize.py", "runtime_tests.py")


@pytest.fixture(scope="module")
def shadowed(tmp_path_factory):
    """A working folder whose modules break any code that imports a generic top-level name."""
    folder = tmp_path_factory.mktemp("user_project")
    for name in SHADOWS:
        (folder / name).write_text(f"raise SystemExit('the user\\'s {name} was imported')\n")
    return folder


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    """The wheel in a fresh virtual environment. Its dependencies come from this environment's site-packages
    through a .pth line (a plain path: the editable install's own .pth there is not processed), so the test
    needs no second copy of torch; llamaport itself comes only from the wheel."""
    work = tmp_path_factory.mktemp("wheel")
    # from a copy of the tree, so setuptools' in-tree build/ folder cannot carry stale files into the wheel
    source = work / "source"
    top_level_skip = {".git", ".venv", "build", "tests", "bench", "bundle", "bundle-report", "sweep", "compare"}

    def skip(folder, names):
        return [n for n in names if n == "__pycache__" or n.endswith(".egg-info")
                or (Path(folder) == ROOT and n in top_level_skip)]
    shutil.copytree(ROOT, source, symlinks=True, ignore=skip)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work),
                    str(source)], check=True, capture_output=True)
    wheel = next(work.glob("llamaport-*.whl"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True)
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def test_the_wheel_installs_only_llamaport(wheel_venv):
    shown = subprocess.run([wheel_venv / "bin" / "python", "-m", "pip", "show", "-f", "llamaport"], check=True,
                           capture_output=True, text=True).stdout
    files = [line.strip() for line in shown.split("Files:")[1].splitlines() if line.strip()]
    tops = {f.split("/")[0] for f in files if not f.startswith("../")}
    assert tops == {"llamaport", "llamaport-0.1.0.dist-info"}, tops
    assert {"llamaport/compile/pipeline.py", "llamaport/errors.py", "llamaport/compile/default_model/model.safetensors",
            "llamaport/runtime_tests/device/main.py"} <= set(files)
    assert [f for f in files if f.startswith("../")] == ["../../../bin/llamaport"]


def _cli(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "llamaport", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("install", ["wheel", "editable"])
def test_the_cli_runs_from_a_folder_of_shadowing_modules(install, wheel_venv, shadowed, bundle):
    python = wheel_venv / "bin" / "python" if install == "wheel" else Path(sys.executable)
    where = subprocess.run([python, "-c", "import llamaport; print(llamaport.__file__)"], cwd=shadowed,
                           capture_output=True, text=True, check=True).stdout
    assert (str(wheel_venv) in where) == (install == "wheel")
    version = _cli(python, shadowed, "--version")
    assert version.returncode == 0 and version.stdout.strip() == "llamaport 0.1.0", version.stderr
    recipes = _cli(python, shadowed, "recipes", "--json")
    assert recipes.returncode == 0 and "et-xnnpack-8da4w-g32" in {r["id"] for r in json.loads(recipes.stdout)}
    plan = _cli(python, shadowed, "build", "--dry-run", "--json", "--out", "never")
    assert plan.returncode == 0 and json.loads(plan.stdout)["recipe"] == "et-xnnpack-8da4w-g32", plan.stderr
    assert not (shadowed / "never").exists()
    built = bundle(DEFAULT_MODEL, "et-xnnpack-fp32").bundle
    checked = _cli(python, shadowed, "check", str(built), "--out", str(shadowed / f"report-{install}"), "--json",
                   "--repeats", "1", "--warmup", "0", "--decode-tokens", "8")
    assert checked.returncode == 0, checked.stderr
    report = json.loads(checked.stdout)
    assert report["summary"]["same_top1_pct"] == 100.0 and set(report["runners"]) == {"executorch-runtime",
                                                                                       "executorch-llm-runner"}
    console = subprocess.run([python.parent / "llamaport", "--version"], cwd=shadowed, capture_output=True, text=True)
    assert console.stdout.strip() == "llamaport 0.1.0"


def test_no_generic_package_is_importable_from_the_editable_install(tmp_path):
    code = ("import importlib.util as u; print([n for n in ('compile', 'quantize', 'targets', 'runtime_tests', "
            "'llamaport_errors') if u.find_spec(n)])")
    found = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"
