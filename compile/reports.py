"""Writing check and compare reports: JSON plus self-contained HTML, into a folder that is replaced
whole (staged, then renamed) and only if it is absent or an earlier report of the same kind."""

from __future__ import annotations

from pathlib import Path

from compile.bundle import staging_folder, write_json
from llamaport_errors import ConfigError


def default_report_folder(bundle: Path) -> Path:
    bundle = Path(bundle).resolve()
    return bundle.parent / f"{bundle.name}-report"


def _write(out: Path, json_name: str, data: dict, html_name: str, html_text: str) -> Path:
    out = Path(out)
    if out.exists() and not (out / json_name).is_file():
        raise ConfigError(f"{out}: exists and is not an earlier report ({json_name} missing); choose another --out")
    with staging_folder(out, overwrite=True) as staging:
        write_json(staging / json_name, data)
        (staging / html_name).write_text(html_text, encoding="utf-8")
    return out


def write_check_report(report: dict, out: Path) -> Path:
    from runtime_tests.report_html import render

    return _write(out, "report.json", report, "report.html", render(report))


def write_compare_report(result: dict, out: Path) -> Path:
    from runtime_tests.compare import render

    return _write(out, "compare.json", result, "compare.html", render(result))
