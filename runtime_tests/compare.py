"""Builds side by side from their check reports: size, speed, accuracy, and the Pareto front over
(smaller, faster, closer to the full model). Speed-ups are against the fp32 build in the set and
against the eager full model where a report measured it."""

from __future__ import annotations

import json
from pathlib import Path

from llamaport_errors import ConfigError
from runtime_tests import html, plots
from runtime_tests.harness import REPORT_SCHEMA_VERSION

COMPARE_SCHEMA_VERSION = 1


def load_report(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read a check report ({e}); pass report.json files or their folders") from e
    if report.get("schema_version") != REPORT_SCHEMA_VERSION:
        raise ConfigError(f"{path}: report schema {report.get('schema_version')}, this llamaport reads {REPORT_SCHEMA_VERSION}")
    return report


def _row(report: dict) -> dict:
    s = report["summary"]
    eager = report["speedups"].get("eager-transformers", {}).get("decode")
    return {"name": report["bundle"]["recipe"]["id"], "scheme": report["bundle"]["recipe"]["scheme"],
            "artifact_bytes": s["artifact_bytes"], "artifact_mb": s["artifact_bytes"] / 1e6,
            "decode_tokens_per_s": s["decode_tokens_per_s"], "ttft_s": s["ttft_s"], "kld_mean": s["kld_mean"],
            "same_top1_pct": s["same_top1_pct"], "ppl_ratio": s["ppl_ratio"], "logit_sqnr_db": s["logit_sqnr_db"],
            "passed": report["passed"], "speedup_vs_eager": eager, "device": report["device"]["name"]}


def pareto_front(rows: list[dict]) -> set[str]:
    """Builds no other build beats on all of size, decode speed and KLD (and strictly on one)."""
    def dominates(a, b):
        no_worse = (a["artifact_bytes"] <= b["artifact_bytes"] and a["decode_tokens_per_s"] >= b["decode_tokens_per_s"]
                    and a["kld_mean"] <= b["kld_mean"])
        better = (a["artifact_bytes"] < b["artifact_bytes"] or a["decode_tokens_per_s"] > b["decode_tokens_per_s"]
                  or a["kld_mean"] < b["kld_mean"])
        return no_worse and better
    return {r["name"] for r in rows if not any(dominates(o, r) for o in rows if o is not r)}


def compare(reports: list[dict]) -> dict:
    rows = [_row(r) for r in reports]
    names = [r["name"] for r in rows]
    if len(set(names)) != len(names):
        raise ConfigError(f"reports of the same recipe twice ({', '.join(sorted(n for n in names if names.count(n) > 1))}); "
                          "compare one report per build")
    fp32 = next((r for r in rows if r["scheme"]["linear"]["kind"] == "fp32" and r["scheme"]["embedding"]["bits"] == 32), None)
    for r in rows:
        r["speedup_vs_fp32_artifact"] = r["decode_tokens_per_s"] / fp32["decode_tokens_per_s"] if fp32 else None
        r["bytes_vs_fp32_artifact"] = r["artifact_bytes"] / fp32["artifact_bytes"] if fp32 else None
    front = pareto_front(rows)
    passing = [r for r in rows if r["passed"]]
    return {"schema_version": COMPARE_SCHEMA_VERSION, "builds": rows, "pareto_front": sorted(front),
            "smallest_passing": min(passing, key=lambda r: r["artifact_bytes"])["name"] if passing else None,
            "fastest_passing": max(passing, key=lambda r: r["decode_tokens_per_s"])["name"] if passing else None,
            "devices": sorted({r["device"] for r in rows})}


def render(result: dict) -> str:
    rows = result["builds"]
    table = html.table(
        ["build", "MB", "x fp32 bytes", "decode tok/s", "x fp32 artifact", "x eager", "TTFT ms", "KLD", "same-top-1 %",
         "ppl ratio", "SQNR dB", "gates", "Pareto"],
        [[r["name"], r["artifact_mb"], r["bytes_vs_fp32_artifact"], r["decode_tokens_per_s"], r["speedup_vs_fp32_artifact"],
          r["speedup_vs_eager"], r["ttft_s"] * 1000, r["kld_mean"], r["same_top1_pct"], r["ppl_ratio"], r["logit_sqnr_db"],
          "pass" if r["passed"] else "FAIL", "yes" if r["name"] in result["pareto_front"] else ""] for r in rows],
        ["" if r["passed"] else "fail" for r in rows])
    verdict = html.paragraph(f"Smallest passing build: {result['smallest_passing'] or 'none'}; "
                             f"fastest passing build: {result['fastest_passing'] or 'none'}.")
    return html.page("llamaport compare", [verdict, table,
                                           html.image(plots.pareto(rows, set(result["pareto_front"])), "Pareto front")])
