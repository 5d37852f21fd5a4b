"""`llamaport`: the build CLI. The only module that prints to the user and exits.

Exit codes: 0 ok, 1 a stage failed, 2 bad input, 3 a gate was not met.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from llamaport_errors import CheckFailed, LlamaportError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Turn small Llama checkpoints into checked on-device bundles.")
out = Console()
err = Console(stderr=True)

TargetsFile = Annotated[Optional[Path], typer.Option("--targets-file", help="TOML file of extra [[target]] profiles.")]
_state = {"verbose": False}


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks and library logs.")] = False):
    _state["verbose"] = verbose


def _quiet_libraries() -> None:
    """torchao, torch.export and ExecuTorch log warnings about their own internals on every build;
    they say nothing to a user of llamaport, so they show only with --verbose. After `import torch`,
    which sets its own log levels."""
    import logging
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch._logging.set_logs(all=logging.ERROR)
    for name in ("torchao", "torch", "executorch", "root"):
        logging.getLogger(None if name == "root" else name).setLevel(logging.ERROR)


def _fail(e: LlamaportError) -> None:
    if _state["verbose"]:
        err.print_exception()
    err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
    if isinstance(e, CheckFailed):
        table = Table("gate", "value", "missed by", title="gates not met")
        for f in e.failures:
            table.add_row(f["gate"], f"{f['value']:.4g}", f"{f['missed_by']:.4g}")
        err.print(table)
    raise typer.Exit(e.exit_code)


@app.command()
def build(
    model: Annotated[Optional[Path], typer.Argument(help="HF folder, Meta folder, or llama2.c .bin/.pt. Default: the bundled model.")] = None,
    recipe: Annotated[str, typer.Option("--recipe", "-r", help="Recipe id, e.g. et-xnnpack-8da4w-g32 (see `llamaport recipes`).")] = "et-xnnpack-8da4w-g32",
    target: Annotated[str, typer.Option("--target", "-t", help="Target id (see `llamaport targets`).")] = "linux-x86_64-xnnpack",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Bundle folder to create.")] = Path("bundle"),
    max_seq_len: Annotated[Optional[int], typer.Option("--max-seq-len", help="Context length; default: the target's, capped by the model's.")] = None,
    eval_text: Annotated[Optional[Path], typer.Option("--eval-text", help="Text file the accuracy gate scores; default: the bundled eval text.")] = None,
    targets_file: TargetsFile = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out folder.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Resolve recipe, target and source format, then stop.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan (with --dry-run) or the manifest as JSON.")] = False,
):
    """Build a quantized bundle and gate its accuracy against the full model."""
    from compile.pipeline import DEFAULT_MODEL, BuildRequest, resolve, run_build

    if not _state["verbose"]:
        _quiet_libraries()
    request = BuildRequest(model=model or DEFAULT_MODEL, recipe=recipe, target=target, out=out_dir,
                           max_seq_len=max_seq_len, eval_text=eval_text, targets_file=targets_file, overwrite=overwrite)
    try:
        if dry_run:
            plan = resolve(request).plan()
            out.print_json(json.dumps(plan)) if as_json else out.print(plan)
            return
        status = err.status("starting")

        def progress(stage: str, state: str, seconds: float) -> None:
            if state == "start":
                status.update(f"{stage} ...")
            else:
                err.print(f"  [green]✓[/] {stage:<10} {seconds:7.1f} s")

        with status:
            result = run_build(request, progress)
    except LlamaportError as e:
        _fail(e)
    acc = result.accuracy
    if as_json:
        print(json.dumps(result.manifest, indent=2))
        return
    out.print(f"[bold]{request.out}[/]: {result.recipe.id} for {result.target.name}, "
              f"{result.artifact.stat().st_size / 1e6:.2f} MB")
    out.print(f"  same-top-1 {acc['same_top1_pct']:.1f}%  KLD {acc['kld_mean']:.2e}  "
              f"perplexity ratio {acc['ppl_ratio']:.4f}  greedy match {acc['greedy_match_pct']:.1f}%")


@app.command()
def targets(targets_file: TargetsFile = None, as_json: Annotated[bool, typer.Option("--json")] = False):
    """List target profiles (built-in and from --targets-file)."""
    from targets import load_targets

    try:
        found = load_targets(targets_file)
    except LlamaportError as e:
        _fail(e)
    if as_json:
        print(json.dumps([t.to_dict() for t in found.values()], indent=2))
        return
    table = Table("target", "runtime", "backends", "context", "memory MB", "linear schemes")
    for t in found.values():
        table.add_row(t.name, t.runtime, " > ".join(t.backends), str(t.default_context_len),
                      str(t.memory_budget_mb), ", ".join(t.linear_schemes))
    out.print(table)


@app.command()
def recipes(as_json: Annotated[bool, typer.Option("--json")] = False):
    """List recipes: exporter, backend and quantization scheme."""
    from quantize import RECIPES

    if as_json:
        print(json.dumps([r.to_dict() for r in RECIPES.values()], indent=2))
        return
    table = Table("recipe", "exporter", "backend", "linears", "output layer", "embedding")
    for r in RECIPES.values():
        s = r.scheme
        table.add_row(r.id, r.exporter, r.backend, s.linear.id, s.output_quant.id,
                      "fp32" if s.embedding.bits == 32 else s.embedding.id)
    out.print(table)


def run() -> None:
    app(prog_name="llamaport")


if __name__ == "__main__":
    sys.exit(run())
