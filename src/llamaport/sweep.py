"""`llamaport sweep`: build and check every recipe a target runs, then name the smallest and the fastest
bundle that pass its gates. Each bundle and report is written atomically as it completes, so an
interrupted sweep leaves only whole bundles; sweep.json, written last, says the sweep finished."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

from llamaport.check_options import check_request
from llamaport.errors import CheckFailed, ConfigError
from llamaport.quantize import check_recipe_runs_on, resolve_recipe
from llamaport.quantize.recipes import recipes_for
from llamaport.runtime_tests.latency import LatencyProtocol
from llamaport.runtime_tests.manifest import GateFailure
from llamaport.targets import Gate, resolve_target
from llamaport.typed import Versioned

SWEEP_SCHEMA_VERSION = 2


@dataclass(frozen=True)
class SweepRequest:
    model: Path
    target: str
    out: Path
    recipes: tuple[str, ...] = ()  # default: every recipe the target runs
    max_seq_len: int | None = None
    eval_text: Path | None = None
    targets_file: Path | None = None
    overwrite: bool = False
    device: str = "local"
    gate_overrides: tuple[Gate, ...] = ()
    protocol: LatencyProtocol = field(default_factory=LatencyProtocol)
    eager_baseline: bool = True


@dataclass(frozen=True)
class SweepEntry:
    recipe: str
    status: str  # passed | check gates missed | build gates missed | refused
    bundle: str | None = None
    report: str | None = None
    reason: str | None = None
    gate_failures: tuple[GateFailure, ...] = ()


@dataclass(frozen=True)
class SweepResult(Versioned):
    SCHEMA_VERSION: ClassVar[int] = SWEEP_SCHEMA_VERSION
    KIND: ClassVar[str] = "sweep"
    ADVICE: ClassVar[str] = "run the sweep again with this llamaport"

    schema_version: int
    model: str
    target: str
    recipes: tuple[SweepEntry, ...]
    smallest_passing: str | None
    fastest_passing: str | None
    pareto_front: tuple[str, ...]


def check_sweep_inputs(model: Path, recipes: tuple[str, ...], max_seq_len: int | None, out: Path) -> None:
    """What sweep and tune are given, refused before the first build: each later build would refuse it anyway,
    after its predecessors had run (and a repeated recipe would only be built twice)."""
    from llamaport.compile.checkpoint import MIN_CONTEXT
    from llamaport.compile.sources import detect_format
    from llamaport.paths import output_folder

    repeated = sorted({r for r in recipes if recipes.count(r) > 1})
    if repeated:
        raise ConfigError(f"--recipe {', '.join(repeated)} given more than once; name each recipe once")
    if max_seq_len is not None and max_seq_len < MIN_CONTEXT:
        raise ConfigError(f"--max-seq-len {max_seq_len} is too short; use at least {MIN_CONTEXT}")
    detect_format(Path(model))
    output_folder(Path(out), "--out", source=Path(model))


def _recipes(target, wanted: tuple[str, ...]) -> list[str]:
    for r in wanted:
        check_recipe_runs_on(resolve_recipe(r, target), target)
    return list(wanted) or recipes_for(target)


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists():
        if not overwrite:
            raise ConfigError(f"{out}: already exists; choose another --out or pass --overwrite")
        if any(out.iterdir()) and not (out / "sweep.json").is_file():
            raise ConfigError(f"{out}: not a finished sweep (no sweep.json); remove it yourself or choose another --out")
        shutil.rmtree(out)


def run_sweep(request: SweepRequest, progress: Callable[[str, str], None] = lambda recipe, step: None) -> SweepResult:
    from llamaport.compile.pipeline import BuildRequest, run_build
    from llamaport.reports import write_check_report, write_compare_report
    from llamaport.runtime_tests.compare import compare
    from llamaport.runtime_tests.harness import check_bundle

    target = resolve_target(request.target, request.targets_file)
    check_sweep_inputs(request.model, tuple(request.recipes), request.max_seq_len, request.out)
    recipes = _recipes(target, request.recipes)
    out = Path(request.out)
    _prepare(out, request.overwrite)
    entries, reports = [], []
    for recipe in recipes:
        bundle, report_dir = out / "bundles" / recipe, out / "reports" / recipe
        try:
            progress(recipe, "build")
            run_build(BuildRequest(model=request.model, recipe=recipe, target=request.target, out=bundle,
                                   max_seq_len=request.max_seq_len, eval_text=request.eval_text,
                                   targets_file=request.targets_file))
        except CheckFailed as e:  # below the target's accuracy floor: no bundle, but a result
            entries.append(SweepEntry(recipe, "build gates missed", gate_failures=tuple(e.failures)))
            continue
        except ConfigError as e:  # e.g. a group size that does not divide this model's widths
            entries.append(SweepEntry(recipe, "refused", reason=str(e)))
            continue
        progress(recipe, "check")
        req = check_request(bundle, request.device, request.model if request.eager_baseline else None, None,
                            request.gate_overrides, request.protocol)
        report = check_bundle(req)
        write_check_report(report, report_dir)
        reports.append(report)
        entries.append(SweepEntry(recipe, "passed" if report.passed else "check gates missed", bundle=str(bundle),
                                  report=str(report_dir / "report.json"), gate_failures=report.gate_failures))
    # Bundles this host cannot run have no measured summary: listed in the sweep, left out of the comparison.
    measured = [r for r in reports if r.summary is not None]
    result = compare(measured) if measured else None
    if result:
        write_compare_report(result, out / "compare")
    summary = SweepResult(schema_version=SWEEP_SCHEMA_VERSION, model=str(request.model), target=target.name,
                          recipes=tuple(entries), smallest_passing=result.smallest_passing if result else None,
                          fastest_passing=result.fastest_passing if result else None,
                          pareto_front=result.pareto_front if result else ())
    out.mkdir(parents=True, exist_ok=True)
    summary.write(out / "sweep.json")
    return summary
