"""The CLI's `farm` commands (a typer sub-app added to the main app by llamaport.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llamaport.common_cli import JsonOpt, _console, _fail, _print_json
from llamaport.errors import LlamaportError
from llamaport.farm import DEFAULT_DB

farm_app = typer.Typer(no_args_is_help=True, help="Run bundles on many devices and keep every result.")
DbOpt = Annotated[str, typer.Option("--db", help="Results database URL: sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB.")]
InventoryOpt = Annotated[Optional[Path], typer.Option("--inventory", help="TOML file of \\[\\[device]] entries; default: this host only.")]


@farm_app.command("run")
def run(
    bundles: Annotated[Optional[list[Path]], typer.Argument(help="Bundle folders to check.")] = None,
    device: Annotated[Optional[list[str]], typer.Option("--device", "-d", help="Run on this device (repeatable).")] = None,
    target: Annotated[Optional[list[str]], typer.Option("--target", "-t", help="Run on any healthy device of this target (repeatable).")] = None,
    inventory: InventoryOpt = None, db: DbOpt = DEFAULT_DB,
    run_id: Annotated[Optional[str], typer.Option("--run-id", help="Name this run (default: a random id).")] = None,
    resume: Annotated[Optional[str], typer.Option("--resume", help="Finish run RUN: only jobs without a result run again.")] = None,
    max_attempts: Annotated[int, typer.Option("--max-attempts", min=1, help="Attempts per job, on different devices after an infrastructure failure.")] = 3,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds one attempt may take.")] = 1800.0,
    all_runners: Annotated[bool, typer.Option("--all-runners", help="Every runner of each bundle, not only its headline runner.")] = False,
    decode_tokens: Annotated[int, typer.Option("--decode-tokens", min=1)] = 64,
    warmup: Annotated[int, typer.Option("--warmup", min=0)] = 1,
    repeats: Annotated[int, typer.Option("--repeats", min=1)] = 5,
    ray: Annotated[Optional[str], typer.Option("--ray", help="Place jobs on this Ray cluster's farm agents (host:port).")] = None,
    as_json: JsonOpt = False,
):
    """Check bundles on devices; store every attempt and result; show progress as jobs finish."""
    from llamaport.farm import FarmRunRequest, run_farm

    err = _console(stderr=True)

    def progress(job, device_id, outcome):
        mark = {"ok": "[green]✓[/]", "job_error": "[red]✗[/]"}.get(outcome.outcome, "[yellow]↻[/]")
        err.print(f"  {mark} {job.recipe:<28} {job.runner:<22} on {device_id:<12} {outcome.outcome}"
                  f"{': ' + outcome.detail.splitlines()[0][:100] if outcome.detail else ''}")
    request = FarmRunRequest(bundles=tuple(bundles or ()), devices=tuple(device or ()), targets=tuple(target or ()),
                             inventory=inventory, db=db, run_id=run_id, resume=resume, max_attempts=max_attempts,
                             timeout_s=timeout, all_runners=all_runners, decode_tokens=decode_tokens, warmup=warmup,
                             repeats=repeats, ray_address=ray)
    try:
        run_id, outcome, done_before = run_farm(request, progress)
    except LlamaportError as e:
        _fail(e)
    except KeyboardInterrupt:
        err.print("interrupted: running attempts were recorded as lost; finish with --resume")
        raise typer.Exit(130)
    summary = {"run_id": run_id, "results": outcome.results, "duplicates": outcome.duplicates,
               "job_errors": outcome.job_errors, "infra_failures": outcome.infra_failures,
               "unfinished": outcome.unfinished, "had_results_before": done_before}
    if as_json:
        _print_json(summary)
    else:
        _console().print(f"run {run_id}: {outcome.results} results, {outcome.job_errors} job errors, "
                         f"{outcome.infra_failures} infrastructure failures retried, {len(outcome.unfinished)} unfinished")
    if outcome.unfinished:
        raise typer.Exit(4)


@farm_app.command("results")
def results(db: DbOpt = DEFAULT_DB,
            model: Annotated[Optional[str], typer.Option("--model")] = None,
            recipe: Annotated[Optional[str], typer.Option("--recipe")] = None,
            device: Annotated[Optional[str], typer.Option("--device")] = None,
            run: Annotated[Optional[str], typer.Option("--run")] = None,
            limit: Annotated[Optional[int], typer.Option("--limit", min=1)] = None,
            as_json: JsonOpt = False):
    """List stored results, newest first."""
    from rich.table import Table

    from llamaport.farm import farm_results
    from llamaport.typed import to_dict

    try:
        rows = farm_results(db, model=model, recipe=recipe, device=device, run_id=run, limit=limit)
    except LlamaportError as e:
        _fail(e)
    if as_json:
        _print_json([{k: v for k, v in to_dict(r).items() if k not in ("report", "repeats")} for r in rows])
        return
    table = Table("run", "recipe", "runner", "device", "decode tok/s", "KLD", "same-top-1 %", "status")
    for r in rows:
        s = r.summary
        table.add_row(r.run_id, r.recipe, r.runner, r.device_id,
                      f"{s['decode_tokens_per_s']:.1f}" if s.get("decode_tokens_per_s") else "–",
                      f"{s['kld_mean']:.2e}" if "kld_mean" in s else "–",
                      f"{s['same_top1_pct']:.1f}" if "same_top1_pct" in s else "–",
                      "ok" if r.passed else f"error: {s['error'][:60]}" if "error" in s else
                      "gates missed: " + ", ".join(f["gate"] for f in s.get("gate_failures", [])))
    _console().print(table)


@farm_app.command("agent")
def agent(
    inventory: Annotated[Path, typer.Option("--inventory", help="TOML file of the \\[\\[device]] entries this host holds.")],
    device: Annotated[Optional[list[str]], typer.Option("--device", "-d", help="Advertise only these devices (default: all of the inventory).")] = None,
    address: Annotated[Optional[str], typer.Option("--address", help="Join the Ray cluster at host:port; without it, start its head.")] = None,
    port: Annotated[int, typer.Option("--port", help="The head's port (with no --address).")] = 6390,
    node_ip: Annotated[str, typer.Option("--node-ip-address", help="The address this node is reached at.")] = "127.0.0.1",
    num_cpus: Annotated[int, typer.Option("--num-cpus", min=0, help="CPUs this node offers Ray (jobs take none; scoring does).")] = 1,
    temp_dir: Annotated[Optional[Path], typer.Option("--temp-dir", help="Ray's session folder (default: Ray's own).")] = None,
):
    """Start a Ray node that advertises this host's devices (one `device:<id>` resource each), and block."""
    import subprocess

    from llamaport.runtime_tests.farm.ray_agent import ray_start_argv

    try:
        argv, env = ray_start_argv(inventory, tuple(device or ()), address, port, node_ip, num_cpus, temp_dir)
    except LlamaportError as e:
        _fail(e)
    _console(stderr=True).print(f"farm agent: {' '.join(argv)}")
    raise typer.Exit(subprocess.run(argv, env=env).returncode)


@farm_app.command("report")
def report(db: DbOpt = DEFAULT_DB,
           out: Annotated[Path, typer.Option("--out", "-o", help="Folder for farm.html.")] = Path("farm-report")):
    """Write the farm report: per device, trends of decode speed and KL divergence, regression verdicts."""
    from llamaport.reports import write_farm_report
    from llamaport.runtime_tests.farm.store import open_store

    try:
        store = open_store(db)
        try:
            path = write_farm_report(store, out)
        finally:
            store.close()
    except LlamaportError as e:
        _fail(e)
    _console().print(f"farm report: {path}")
