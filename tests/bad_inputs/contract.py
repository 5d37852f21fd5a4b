"""The contract every bad input is held to: exit 2 (or the code given), one line on stderr that starts with
"error: " and names the file or field, no traceback, and no output folder, not even a partial one."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from llamaport.cli import app

runner = CliRunner()
DELETE = object()  # edit_json: remove the key


def invoke(argv: list[str], tmp: Path):
    return runner.invoke(app, [str(a).replace("{tmp}", str(tmp)) for a in argv], prog_name="llamaport")


def assert_refused(result, out: Path, *needles: str, exit_code: int = 2) -> None:
    assert result.exit_code == exit_code, result.output
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert message.startswith("error: "), message
    for needle in needles:
        assert needle in message, message
    assert "Traceback" not in result.output
    assert not out.exists(), f"{out} was left behind"
    assert not list(out.parent.glob(f".{out.name}.partial-*")), "a partial folder was left behind"


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is DELETE:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))
