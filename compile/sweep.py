"""`llamaport sweep`: build and check every recipe a target runs, then name the smallest and the fastest
bundle that pass its gates. Each bundle and report is written atomically as it completes, so an
interrupted sweep leaves only whole bundles; sweep.json, written last, says the sweep finished."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from compile.bundle import write_json
from compile.check_options import check_request
from llamaport_errors import CheckFailed, ConfigError
from quantize import RECIPES, check_recipe_runs_on, resolve_recipe
from runtime_tests.latency import LatencyProtocol
from targets import Gate, resolve_target


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


def recipes_for(target, wanted: tuple[str, ...]) -> list[str]:
    if wanted:
        for r in wanted:
            check_recipe_runs_on(resolve_recipe(r), target)
        return list(wanted)
    runnable = []
    for recipe in RECIPES.values():
        try:
            check_recipe_runs_on(recipe, target)
        except ConfigError:
            continue
        runnable.append(recipe.id)
    return runnable


def run_sweep(request: SweepRequest, progress: Callable[[str, str], None] = lambda recipe, step: None) -> dict:
    from compile.pipeline import BuildRequest, run_build
    from compile.reports import write_check_report, write_compare_report
    from runtime_tests.compare import compare
    from runtime_tests.harness import check_bundle

    target = resolve_target(request.target, request.targets_file)
    recipes = recipes_for(target, request.recipes)
    out = Path(request.out)
    if out.exists():
        if not request.overwrite:
            raise ConfigError(f"{out}: already exists; choose another --out or pass --overwrite")
        if any(out.iterdir()) and not (out / "sweep.json").is_file():
            raise ConfigError(f"{out}: not a finished sweep (no sweep.json); remove it yourself or choose another --out")
        shutil.rmtree(out)
    entries, reports = [], []
    for recipe in recipes:
        bundle, report_dir = out / "bundles" / recipe, out / "reports" / recipe
        entry = {"recipe": recipe, "bundle": str(bundle)}
        try:
            progress(recipe, "build")
            run_build(BuildRequest(model=request.model, recipe=recipe, target=request.target, out=bundle,
                                   max_seq_len=request.max_seq_len, eval_text=request.eval_text,
                                   targets_file=request.targets_file))
        except CheckFailed as e:  # below the target's accuracy floor: no bundle, but a result
            entries.append({**entry, "bundle": None, "status": "build gates missed", "gate_failures": e.failures})
            continue
        except ConfigError as e:  # e.g. a group size that does not divide this model's widths
            entries.append({**entry, "bundle": None, "status": "refused", "reason": str(e)})
            continue
        progress(recipe, "check")
        req = check_request(bundle, request.device, request.model if request.eager_baseline else None, None,
                            request.gate_overrides, request.protocol.decode_tokens, request.protocol.warmup,
                            request.protocol.repeats)
        report = check_bundle(req)
        write_check_report(report, report_dir)
        reports.append(report)
        entries.append({**entry, "status": "passed" if report["passed"] else "check gates missed",
                        "report": str(report_dir / "report.json"), "gate_failures": report["gate_failures"]})
    result = compare(reports) if reports else None
    if result:
        write_compare_report(result, out / "compare")
    summary = {"schema_version": 1, "model": str(request.model), "target": target.name, "recipes": entries,
               "smallest_passing": result and result["smallest_passing"],
               "fastest_passing": result and result["fastest_passing"],
               "pareto_front": result["pareto_front"] if result else []}
    write_json(out / "sweep.json", summary)
    return summary
