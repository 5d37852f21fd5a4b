"""The design's layering holds: one installed namespace, imports pointing one way, the data layers and the
dry-run path free of torch, and only the CLI printing or exiting."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("targets", "quantize", "runtime_tests", "compile")
BASE = {"errors", "typed", "entry", "paths"}  # llamaport's own base modules: every layer may import them
ALLOWED = {"targets": set(), "quantize": set(), "runtime_tests": {"targets"},
           "compile": {"targets", "quantize", "runtime_tests"}}
APP = ROOT / "src" / "llamaport"
GENERIC = {"compile", "quantize", "targets", "runtime_tests", "llamaport_errors"}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _python_files():
    for package in PACKAGES:
        yield package, sorted((ROOT / package).rglob("*.py"))
    yield "app", sorted(p for p in APP.glob("*.py"))


def test_nothing_imports_a_generic_top_level_package():
    for folder in (*PACKAGES, "src", "tests", "bench", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            wrong = {m for m in _imports(path) if m.split(".")[0] in GENERIC}
            assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}; import llamaport.* instead"


def test_imports_point_one_way():
    for package, paths in _python_files():
        if package == "app":
            continue  # the application layer may import everything
        for path in paths:
            used = {m.split(".")[1] for m in _imports(path) if m.startswith("llamaport.")}
            wrong = used - ALLOWED[package] - BASE - {package}
            assert not wrong, f"{path.relative_to(ROOT)} imports llamaport.{wrong}"


def _run_clean(code: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, cwd=cwd)


def test_data_layers_and_the_check_host_side_import_no_torch(tmp_path):
    modules = ("llamaport", "llamaport.targets", "llamaport.quantize", "llamaport.runtime_tests.harness",
               "llamaport.runtime_tests.compare", "llamaport.runtime_tests.manifest", "llamaport.runtime_tests.report",
               "llamaport.cli", "llamaport.compile.pipeline")
    _run_clean(f"import sys, {', '.join(modules)}; assert 'torch' not in sys.modules, 'torch imported'", tmp_path)


def test_build_dry_run_imports_no_torch(tmp_path):
    code = ("import sys; from llamaport import api; api.plan(out='never-written'); "
            "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, 'heavy import'")
    _run_clean(code, tmp_path)


# Process entry points that speak to the host through one tagged stdout line, not to a user.
DEVICE_PROCESSES = {"runtime_tests/device/main.py", "runtime_tests/device/__main__.py", "compile/eager_run.py"}
CLI = {"src/llamaport/cli.py", "src/llamaport/cli_check.py", "src/llamaport/cli_farm.py", "src/llamaport/common_cli.py",
       "src/llamaport/__main__.py"}


def _prints_or_exits(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f"{getattr(f.value, 'id', '?')}.{f.attr}" if isinstance(f, ast.Attribute) else ""
            if name in ("print", "sys.exit", "exit", "typer.Exit", "os._exit") or name.endswith("stdout.write"):
                found.append(f"{name} at line {node.lineno}")
    return found


def test_only_the_cli_prints_or_exits():
    for _, paths in _python_files():
        for path in paths:
            rel = str(path.relative_to(ROOT))
            if rel in DEVICE_PROCESSES or rel in CLI:
                continue
            assert not _prints_or_exits(path), f"{rel}: {_prints_or_exits(path)}"


DEVICE_SIDE_ALLOWED = {"numpy", "torch", "executorch", "onnxruntime", "onnxruntime_genai"}  # the runtimes


def test_the_device_package_imports_only_the_standard_library_numpy_and_the_runtimes():
    """It is zipped into one file that boards with only a runtime's wheel run (runtime_tests/device_job.py)."""
    for path in (ROOT / "runtime_tests" / "device").rglob("*.py"):
        outside = {m.split(".")[0] for m in _imports(path)} - set(sys.stdlib_module_names) - DEVICE_SIDE_ALLOWED
        assert not outside, f"{path.relative_to(ROOT)} imports {outside}; the device side must stand alone"
