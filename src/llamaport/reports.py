"""Writing check and compare reports: JSON plus self-contained HTML, into a folder that is replaced
whole (staged, then renamed) and only if it is absent or an earlier report of the same kind."""

from __future__ import annotations

from pathlib import Path

from llamaport.compile.bundle import staging_folder
from llamaport.errors import ConfigError
from llamaport.paths import output_folder
from llamaport.runtime_tests.compare import Comparison
from llamaport.runtime_tests.report import REPORT, Report


def default_report_folder(bundle: Path) -> Path:
    bundle = Path(bundle).resolve()
    return bundle.parent / f"{bundle.name}-report"


def _write(out: Path, json_name: str, record, html_name: str, html_text: str) -> Path:
    out = output_folder(Path(out), "--out")
    if out.exists() and not (out / json_name).is_file():
        raise ConfigError(f"{out}: exists and is not an earlier report ({json_name} missing); choose another --out")
    with staging_folder(out, overwrite=True) as staging:
        if record is not None:
            record.write(staging / json_name)
        (staging / html_name).write_text(html_text, encoding="utf-8")
    return out


def write_farm_report(store, out: Path) -> Path:
    """farm.html, replacing an earlier farm report in `out` (never another folder's files)."""
    from llamaport.runtime_tests.farm.report import render

    out = output_folder(Path(out), "--out")  # before the store is read: a bad --out costs nothing
    return _write(out, "farm.html", None, "farm.html", render(store)) / "farm.html"


def write_check_report(report: Report, out: Path) -> Path:
    from llamaport.runtime_tests.report_html import render

    return _write(out, REPORT, report, "report.html", render(report))


def write_compare_report(result: Comparison, out: Path) -> Path:
    from llamaport.runtime_tests.compare import render

    return _write(out, "compare.json", result, "compare.html", render(result))
