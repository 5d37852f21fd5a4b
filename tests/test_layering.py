"""The design's layering holds: imports point one way, and targets/quantize data load without torch."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTERNAL = {"targets", "quantize", "compile", "runtime_tests"}
ALLOWED = {"targets": set(), "quantize": set(), "runtime_tests": {"targets"},
           "compile": {"targets", "quantize", "runtime_tests"}}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & INTERNAL


def test_imports_point_one_way():
    for package, allowed in ALLOWED.items():
        for path in (ROOT / package).rglob("*.py"):
            wrong = _imports(path) - allowed - {package}
            assert not wrong, f"{path.relative_to(ROOT)} imports {wrong}"


def test_listing_targets_and_recipes_imports_no_torch():
    code = "import sys, targets, quantize; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# Process entry points that speak to the host through one tagged stdout line, not to a user.
DEVICE_PROCESSES = {"runtime_tests/device_run.py", "compile/eager_run.py"}


def test_the_check_host_side_imports_no_torch():
    """The host verifies and schedules; only the device processes load runtimes."""
    code = "import sys, runtime_tests.harness, runtime_tests.compare; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_only_the_cli_exits_or_prints():
    for package in INTERNAL:
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "cli.py" or str(path.relative_to(ROOT)) in DEVICE_PROCESSES:
                continue
            text = path.read_text()
            assert "sys.exit" not in text and "typer.Exit" not in text, path
            assert "print(" not in text, path
