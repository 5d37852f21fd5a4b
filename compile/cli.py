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
# Tables are wider than the 80 columns rich assumes when output is captured (CI logs, pipes).
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

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
            table.add_row(f["gate"], f"{f['value']:.6g}", f"{f['missed_by']:.6g}")
        err.print(table)
    raise typer.Exit(e.exit_code)


@app.command()
def build(
    model: Annotated[Optional[Path], typer.Argument(help="HF folder, Meta folder, or llama2.c .bin/.pt. Default: the bundled model.")] = None,
    recipe: Annotated[Optional[str], typer.Option("--recipe", "-r", help="Recipe id, e.g. et-xnnpack-8da4w-g32 or ortgenai-cpu-8da4w-g32 (see `llamaport recipes`). Default: the target's.")] = None,
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
    from runtime_tests.harness import artifact_of

    out.print(f"[bold]{request.out}[/]: {result.recipe.id} for {result.target.name}, "
              f"{artifact_of(result.manifest)['bytes'] / 1e6:.2f} MB")
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


RepeatsOpt = Annotated[int, typer.Option("--repeats", min=1, help="Timed runs after the warm-up; medians are reported.")]
WarmupOpt = Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs before the timed ones.")]
DecodeOpt = Annotated[int, typer.Option("--decode-tokens", min=1, help="Tokens decoded per timed run.")]
DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="Device to check on (known: local).")]
MinTop1 = Annotated[Optional[float], typer.Option("--min-top1", help="Gate: minimum same-top-1 % vs the full model.")]
MaxKld = Annotated[Optional[float], typer.Option("--max-kld", help="Gate: maximum mean KL divergence vs the full model.")]
MaxPpl = Annotated[Optional[float], typer.Option("--max-ppl-ratio", help="Gate: maximum perplexity ratio vs the full model.")]
MinSqnr = Annotated[Optional[float], typer.Option("--min-sqnr", help="Gate: minimum logit SQNR (dB) vs the full model.")]
MinTps = Annotated[Optional[float], typer.Option("--min-decode-tps", help="Gate: minimum median decode tokens/s.")]
MaxBytes = Annotated[Optional[int], typer.Option("--max-bytes", help="Gate: maximum artifact bytes.")]


def _print_check(report: dict, folder: Path) -> None:
    s = report["summary"]
    out.print(f"[bold]{folder}[/]: {report['bundle']['recipe']['id']} on {report['device']['name']}, "
              f"{s['artifact_bytes'] / 1e6:.2f} MB")
    out.print(f"  accuracy vs full model: same-top-1 {s['same_top1_pct']:.1f}%  KLD {s['kld_mean']:.2e} "
              f"(p99 {s['kld_p99']:.2e})  perplexity ratio {s['ppl_ratio']:.4f}  SQNR {s['logit_sqnr_db']:.1f} dB  "
              f"greedy match {s['greedy_match_pct']:.1f}%")
    table = Table("runner", "load s", "TTFT ms", "prefill tok/s", "decode tok/s", "decode range", "peak RSS MB")
    for name, r in {**report["runners"], **report["baselines"]}.items():
        lat = r["latency"]
        dec, pre, ttft = lat["decode_tokens_per_s"], lat["prefill_tokens_per_s"], lat["ttft_s"]
        table.add_row(name, f"{r['load_s']:.3f}", f"{ttft['median'] * 1000:.2f}" if ttft else "–",
                      f"{pre['median']:.0f}" if pre else "–", f"{dec['median']:.1f}" if dec else "–",
                      f"{dec['min']:.1f}–{dec['max']:.1f}" if dec else "–", f"{r['peak_rss_mb']:.0f}")
    out.print(table)
    for name, sp in report["speedups"].items():
        out.print(f"  decode speed-up vs {name}: {sp['decode']:.2f}x   time to first token: {sp['ttft']:.2f}x")
    out.print(f"  report: {folder / 'report.html'}")


@app.command()
def check(
    bundle_dir: Annotated[Path, typer.Argument(help="Bundle folder made by `llamaport build`.")],
    device: DeviceOpt = "local",
    report_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report folder; default: BUNDLE-report beside the bundle.")] = None,
    baseline_model: Annotated[Optional[Path], typer.Option("--baseline-model", help="Time this full model (eager, transformers) beside the bundle.")] = None,
    baseline_bundle: Annotated[Optional[Path], typer.Option("--baseline-bundle", help="Time this (fp32) bundle beside it.")] = None,
    decode_tokens: DecodeOpt = 64, warmup: WarmupOpt = 1, repeats: RepeatsOpt = 5,
    min_top1: MinTop1 = None, max_kld: MaxKld = None, max_ppl_ratio: MaxPpl = None, min_sqnr: MinSqnr = None,
    min_decode_tps: MinTps = None, max_bytes: MaxBytes = None,
):
    """Check a bundle on a device against its golden outputs: accuracy, latency, gates, report."""
    from compile.check_options import check_request, gate_overrides
    from compile.reports import default_report_folder, write_check_report
    from runtime_tests.harness import check_bundle

    try:
        overrides = gate_overrides(min_top1, max_kld, max_ppl_ratio, min_sqnr, min_decode_tps, max_bytes)
        request = check_request(bundle_dir, device, baseline_model, baseline_bundle, overrides, decode_tokens, warmup, repeats)
        with err.status("checking") as status:
            report = check_bundle(request, lambda step: status.update(f"running {step} ..."))
        folder = write_check_report(report, report_dir or default_report_folder(bundle_dir))
        _print_check(report, folder)
        if not report["passed"]:
            raise CheckFailed(f"{bundle_dir}: misses {len(report['gate_failures'])} gate(s) on {device}",
                              report["gate_failures"])
    except LlamaportError as e:
        _fail(e)


@app.command()
def compare(
    reports: Annotated[list[Path], typer.Argument(help="report.json files (or their folders) from `llamaport check`.")],
    report_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for compare.json and compare.html.")] = Path("compare"),
):
    """Put checked builds side by side: size, speed, accuracy and the Pareto front."""
    from compile.reports import write_compare_report
    from runtime_tests.compare import compare as compare_reports
    from runtime_tests.compare import load_report

    try:
        result = compare_reports([load_report(p) for p in reports])
        folder = write_compare_report(result, report_dir)
    except LlamaportError as e:
        _fail(e)
    table = Table("build", "MB", "decode tok/s", "x fp32 artifact", "x eager", "KLD", "same-top-1 %", "gates", "Pareto")
    for r in result["builds"]:
        table.add_row(r["name"], f"{r['artifact_mb']:.2f}", f"{r['decode_tokens_per_s']:.1f}",
                      f"{r['speedup_vs_fp32_artifact']:.2f}" if r["speedup_vs_fp32_artifact"] else "–",
                      f"{r['speedup_vs_eager']:.2f}" if r["speedup_vs_eager"] else "–", f"{r['kld_mean']:.2e}",
                      f"{r['same_top1_pct']:.1f}", "pass" if r["passed"] else "FAIL",
                      "yes" if r["name"] in result["pareto_front"] else "")
    out.print(table)
    out.print(f"smallest passing: {result['smallest_passing']}   fastest passing: {result['fastest_passing']}")
    out.print(f"report: {folder / 'compare.html'}")


@app.command()
def sweep(
    model: Annotated[Optional[Path], typer.Argument(help="Model to sweep. Default: the bundled model.")] = None,
    target: Annotated[str, typer.Option("--target", "-t", help="Target whose recipes to build and check.")] = "linux-x86_64-xnnpack",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for bundles/, reports/, compare/ and sweep.json.")] = Path("sweep"),
    recipe: Annotated[Optional[list[str]], typer.Option("--recipe", "-r", help="Only these recipes (repeatable); default: all the target runs.")] = None,
    max_seq_len: Annotated[Optional[int], typer.Option("--max-seq-len", help="Context length of every bundle.")] = None,
    targets_file: TargetsFile = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier sweep in --out.")] = False,
    device: DeviceOpt = "local", decode_tokens: DecodeOpt = 64, warmup: WarmupOpt = 1, repeats: RepeatsOpt = 5,
    min_top1: MinTop1 = None, max_kld: MaxKld = None, max_ppl_ratio: MaxPpl = None, min_sqnr: MinSqnr = None,
    min_decode_tps: MinTps = None, max_bytes: MaxBytes = None,
):
    """Build and check the target's recipes; name the smallest and the fastest bundle that pass."""
    from compile.check_options import gate_overrides
    from compile.pipeline import DEFAULT_MODEL
    from compile.sweep import SweepRequest, run_sweep
    from runtime_tests.latency import LatencyProtocol

    if not _state["verbose"]:
        _quiet_libraries()
    try:
        request = SweepRequest(model=model or DEFAULT_MODEL, target=target, out=out_dir, recipes=tuple(recipe or ()),
                               max_seq_len=max_seq_len, targets_file=targets_file, overwrite=overwrite, device=device,
                               gate_overrides=gate_overrides(min_top1, max_kld, max_ppl_ratio, min_sqnr, min_decode_tps, max_bytes),
                               protocol=LatencyProtocol(decode_tokens=decode_tokens, warmup=warmup, repeats=repeats))
        with err.status("sweeping") as status:
            result = run_sweep(request, lambda r, step: status.update(f"{r}: {step} ..."))
    except LlamaportError as e:
        _fail(e)
    table = Table("recipe", "status")
    for e in result["recipes"]:
        table.add_row(e["recipe"], e["status"])
    out.print(table)
    out.print(f"smallest passing: {result['smallest_passing']}   fastest passing: {result['fastest_passing']}")
    out.print(f"sweep: {out_dir / 'sweep.json'}   compare: {out_dir / 'compare' / 'compare.html'}")


def run() -> None:
    app(prog_name="llamaport")


if __name__ == "__main__":
    sys.exit(run())
