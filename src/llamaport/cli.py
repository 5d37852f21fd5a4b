"""`llamaport` / `python -m llamaport`: the CLI. It parses, calls llamaport.api, prints, and maps errors to
exit codes; it is the only module that prints to the user or exits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llamaport import cli_check, common_cli as common
from llamaport.cli_farm import farm_app
from llamaport.common_cli import (JsonOpt, OneLineUsageErrors, TargetOpt, TargetsFile, _complete_recipe, _complete_target, _console, _fail,
                                  _print_json, _quiet_libraries, _version, kld_text, with_se)
from llamaport.errors import LlamaportError

EXIT_CODES = "Exit codes: 0 ok, 1 a stage failed, 2 bad input, 3 a gate was not met, 4 the device could not run the check."
app = typer.Typer(cls=OneLineUsageErrors, no_args_is_help=True, pretty_exceptions_enable=False, epilog=EXIT_CODES,
                  help="Turn small Llama checkpoints into quantized, checked on-device bundles.")


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks and the libraries' logs.")] = False,
         version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                         help="Print the version and exit.")] = None):
    common.set_verbose(verbose)


@app.command()
def build(
    model: Annotated[Optional[Path], typer.Argument(help="HF folder, Meta folder, or llama2.c .bin/.pt. Default: the bundled model.")] = None,
    recipe: Annotated[Optional[str], typer.Option("--recipe", "-r", autocompletion=_complete_recipe,
                                                  help="Recipe id, e.g. et-xnnpack-8da4w-g32 or ortgenai-cpu-8da4w-g32 (see `llamaport recipes`). Default: the target's.")] = None,
    target: TargetOpt = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Bundle folder to create. Default: bundle.")] = None,
    max_seq_len: Annotated[Optional[int], typer.Option("--max-seq-len", help="Context length; default: the target's, capped by the model's.")] = None,
    eval_text: Annotated[Optional[Path], typer.Option("--eval-text", help="Text file the accuracy gate scores; default: the bundled eval text.")] = None,
    targets_file: TargetsFile = None,
    calibration_text: Annotated[Optional[str], typer.Option("--calibration-text", help="Calibrated recipes (static int8 for NPUs, -gptq, -keep8xN): text to calibrate on, never the eval text; default: the model folder's calibration.txt. 'dummy' calibrates on export_llama's one example input, to measure what calibration is worth.")] = None,
    calibration_samples: Annotated[Optional[int], typer.Option("--calibration-samples", help="Windows of calibration text, each one forward (default 16).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out folder.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Resolve recipe, target and source format, then stop (no weights read).")] = False,
    config: Annotated[Optional[Path], typer.Option("--config", help="Rebuild from a plan saved with `build --dry-run --json`; options given here override it.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan (with --dry-run) or the manifest as JSON.")] = False,
):
    """Build a quantized bundle and gate its accuracy against the full model."""
    from llamaport import api

    try:
        given = {"model": model, "recipe": recipe, "target": target, "out": out_dir, "max_seq_len": max_seq_len,
                 "eval_text": eval_text, "targets_file": targets_file, "calibration_text": calibration_text,
                 "calibration_samples": calibration_samples}
        base = api.read_plan(config) if config else {}
        # Given options override the plan's; paths travel as text, as the plan holds them.
        args = {k: str(v) if isinstance(v, Path) else v if v is not None else base.get(k) for k, v in given.items()}
        args["out"] = args["out"] or "bundle"
        if dry_run:
            plan = api.plan(**args, overwrite=overwrite)
            _print_json(plan) if as_json else _print_plan(plan)
            return
        _quiet_libraries()
        result = _run_build(args, overwrite)
    except LlamaportError as e:
        _fail(e)
    if as_json:
        _print_json(result.manifest.to_dict())
        return
    m, a = result.manifest, result.manifest.accuracy.vs_full
    out = _console()
    out.print(f"[bold]{result.bundle}[/]: {m.recipe.id} for {m.target.name}, {m.artifact_bytes() / 1e6:.2f} MB")
    out.print(f"  same-top-1 {with_se(a.same_top1_pct, a.same_top1_se_pct, '.1f')}%  KLD {kld_text(a)}  "
              f"perplexity ratio {with_se(a.ppl_ratio, a.ppl_ratio_se, '.4f')}  greedy match {a.greedy_match_pct:.1f}%")


def _print_plan(plan: dict) -> None:
    out = _console()
    for key in ("model", "source_format", "recipe", "recipe_chosen_by", "target", "out", "max_seq_len", "eval_text", "targets_file",
                "calibration_text", "calibration_samples"):
        out.print(f"{key:>19}  {plan[key] if plan[key] is not None else '–'}")


def _run_build(args: dict, overwrite: bool):
    from llamaport import api

    err = _console(stderr=True)
    status = err.status("starting")

    def progress(stage: str, state: str, seconds: float) -> None:
        if state == "start":
            status.update(f"{stage} ...")
        elif stage != "plan":  # instant, and a refusal right after it should stay a single line
            err.print(f"  [green]✓[/] {stage:<19} {seconds:7.1f} s")
    with status:
        return api.build(**args, overwrite=overwrite, progress=progress)


@app.command()
def targets(targets_file: TargetsFile = None, as_json: JsonOpt = False):
    """List target profiles (built-in and from --targets-file)."""
    from llamaport.targets import load_targets

    try:
        found = load_targets(targets_file)
    except LlamaportError as e:
        _fail(e)
    if as_json:
        _print_json([t.to_dict() for t in found.values()])
        return
    from rich.table import Table
    table = Table("target", "runtime", "lowering order", "context", "memory MB", "linear schemes", "default recipe")
    for t in found.values():
        table.add_row(t.name, t.runtime, " > ".join(t.backends), str(t.default_context_len), str(t.memory_budget_mb),
                      ", ".join(t.linear_schemes), t.default_recipe or "–")
    _console().print(table)


@app.command()
def recipes(target: Annotated[Optional[str], typer.Option("--target", "-t", autocompletion=_complete_target,
                                                          help="Only the recipes this target runs.")] = None,
            targets_file: TargetsFile = None, as_json: JsonOpt = False):
    """List recipes: exporter, backend and quantization scheme."""
    from llamaport.quantize import RECIPES
    from llamaport.quantize.recipes import recipes_for
    from llamaport.targets import resolve_target

    try:
        ids = recipes_for(resolve_target(target, targets_file)) if target else list(RECIPES)
    except LlamaportError as e:
        _fail(e)
    if as_json:
        _print_json([RECIPES[i].to_dict() for i in ids])
        return
    from rich.table import Table
    table = Table("recipe", "exporter", "backend", "linears", "output layer", "embedding")
    for r in (RECIPES[i] for i in ids):
        s = r.scheme
        table.add_row(r.id, r.exporter, r.backend, s.linear.id, s.output_quant.id,
                      "fp32" if s.embedding.bits == 32 else s.embedding.id)
    _console().print(table)


for command in (cli_check.check, cli_check.compare, cli_check.sweep, cli_check.tune, cli_check.generate):
    app.command()(command)
app.add_typer(farm_app, name="farm")


def run() -> None:
    app(prog_name="llamaport")
