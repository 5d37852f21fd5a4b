"""Builds side by side from their check reports: size, speed, accuracy, and the Pareto front over
(smaller, faster, closer to the full model). Speed-ups are against the fp32 build in the set and
against the eager full model where a report measured it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from llamaport.errors import ConfigError
from llamaport.runtime_tests import html, plots
from llamaport.runtime_tests.report import Report
from llamaport.typed import Versioned

COMPARE_SCHEMA_VERSION = 2


@dataclass(frozen=True)
class CompareRow:
    name: str
    full_precision: bool
    artifact_bytes: int
    artifact_mb: float
    decode_tokens_per_s: float
    ttft_s: float | None
    kld_mean: float
    same_top1_pct: float
    ppl_ratio: float
    logit_sqnr_db: float
    passed: bool
    speedup_vs_eager: float | None
    device: str
    speedup_vs_fp32_artifact: float | None = None
    bytes_vs_fp32_artifact: float | None = None
    decode_source: str = "measured"  # or "npu-estimate" (report.Summary.decode_source)
    # Standard errors of the accuracy columns (llama.cpp's; runtime_tests.metrics.spread_statistics): how finely
    # this eval set measures them, so a reader does not rank builds on differences inside them. None for reports
    # from before they were measured.
    kld_se: float | None = None
    same_top1_se_pct: float | None = None
    ppl_ratio_se: float | None = None


@dataclass(frozen=True)
class Comparison(Versioned):
    SCHEMA_VERSION: ClassVar[int] = COMPARE_SCHEMA_VERSION
    KIND: ClassVar[str] = "comparison"
    ADVICE: ClassVar[str] = "compare the reports again with this llamaport"

    schema_version: int
    builds: tuple[CompareRow, ...]
    pareto_front: tuple[str, ...]
    smallest_passing: str | None
    fastest_passing: str | None
    devices: tuple[str, ...]


def _name(report: Report) -> str:
    """The recipe id; a build calibrated on something other than calibration text says so (the same recipe
    calibrated two ways is two builds)."""
    cal = report.bundle.calibration
    if cal is None:
        return report.bundle.recipe.id
    from pathlib import Path

    source = "dummy input" if cal.source == "dummy" else Path(cal.source).name
    return f"{report.bundle.recipe.id} (calibrated on {source} x{cal.samples})"


def _row(report: Report) -> CompareRow:
    s = report.summary
    if s is None:
        raise ConfigError(f"{report.bundle.path}: {report.not_runnable_here}; nothing was measured to compare: leave "
                          "its report out")
    eager = report.speedups.get("eager-transformers")
    return CompareRow(name=_name(report), decode_source=s.decode_source, full_precision=report.bundle.recipe.full_precision,
                      artifact_bytes=s.artifact_bytes, artifact_mb=s.artifact_bytes / 1e6,
                      decode_tokens_per_s=s.decode_tokens_per_s, ttft_s=s.ttft_s, kld_mean=s.kld_mean,
                      same_top1_pct=s.same_top1_pct, ppl_ratio=s.ppl_ratio, logit_sqnr_db=s.logit_sqnr_db,
                      kld_se=s.kld_se, same_top1_se_pct=s.same_top1_se_pct, ppl_ratio_se=s.ppl_ratio_se,
                      passed=report.passed, speedup_vs_eager=eager.decode if eager else None, device=report.device.name)


def pareto_front(rows: list[CompareRow]) -> set[str]:
    """Builds no other build beats on all of size, decode speed and KLD (and strictly on one)."""
    def dominates(a, b):
        no_worse = (a.artifact_bytes <= b.artifact_bytes and a.decode_tokens_per_s >= b.decode_tokens_per_s
                    and a.kld_mean <= b.kld_mean)
        better = (a.artifact_bytes < b.artifact_bytes or a.decode_tokens_per_s > b.decode_tokens_per_s
                  or a.kld_mean < b.kld_mean)
        return no_worse and better
    return {r.name for r in rows if not any(dominates(o, r) for o in rows if o is not r)}


def compare(reports: list[Report]) -> Comparison:
    rows = [_row(r) for r in reports]
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise ConfigError(f"reports of the same recipe twice ({', '.join(sorted(n for n in names if names.count(n) > 1))}); "
                          "compare one report per build")
    fp32 = next((r for r in rows if r.full_precision), None)
    if fp32:
        rows = [replace(r, speedup_vs_fp32_artifact=r.decode_tokens_per_s / fp32.decode_tokens_per_s,
                        bytes_vs_fp32_artifact=r.artifact_bytes / fp32.artifact_bytes) for r in rows]
    passing = [r for r in rows if r.passed]
    return Comparison(schema_version=COMPARE_SCHEMA_VERSION, builds=tuple(rows), pareto_front=tuple(sorted(pareto_front(rows))),
                      smallest_passing=min(passing, key=lambda r: r.artifact_bytes).name if passing else None,
                      fastest_passing=max(passing, key=lambda r: r.decode_tokens_per_s).name if passing else None,
                      devices=tuple(sorted({r.device for r in rows})))


def _pm(value: float, se: float | None):
    return value if se is None else f"{html.fmt(value)} ± {html.fmt(se)}"


def render(result: Comparison) -> str:
    rows = result.builds
    table = html.table(
        ["build", "MB", "x fp32 bytes", "decode tok/s", "x fp32 artifact", "x eager", "TTFT ms", "KLD", "same-top-1 %",
         "ppl ratio", "SQNR dB", "gates", "Pareto"],
        [[r.name, r.artifact_mb, r.bytes_vs_fp32_artifact,
          r.decode_tokens_per_s if r.decode_source == "measured" else f"{r.decode_tokens_per_s:.0f} (NPU estimate)",
          r.speedup_vs_fp32_artifact,
          r.speedup_vs_eager, r.ttft_s * 1000 if r.ttft_s else None, _pm(r.kld_mean, r.kld_se),
          _pm(r.same_top1_pct, r.same_top1_se_pct), _pm(r.ppl_ratio, r.ppl_ratio_se),
          r.logit_sqnr_db, "pass" if r.passed else "FAIL", "yes" if r.name in result.pareto_front else ""] for r in rows],
        ["" if r.passed else "fail" for r in rows])
    verdict = html.paragraph(f"Smallest passing build: {result.smallest_passing or 'none'}; "
                             f"fastest passing build: {result.fastest_passing or 'none'}.")
    return html.page("llamaport compare", [verdict, table,
                                           html.image(plots.pareto(rows, set(result.pareto_front)), "Pareto front")])
