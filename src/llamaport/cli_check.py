"""The CLI's check side: check, compare, sweep, tune, generate (registered on the app by llamaport.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llamaport.common_cli import (JsonOpt, TargetOpt, TargetsFile, _complete_recipe, _console, _fail, _print_json,
                                  kld_text, with_se)
from llamaport.errors import LlamaportError

RepeatsOpt = Annotated[int, typer.Option("--repeats", min=1, help="Timed runs after the warm-up; medians are reported.")]
WarmupOpt = Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs before the timed ones.")]
DecodeOpt = Annotated[int, typer.Option("--decode-tokens", min=1, help="Tokens decoded per timed run.")]
DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="Device to check on: local (this host), or an id of --inventory.")]
InventoryOpt = Annotated[Optional[Path], typer.Option("--inventory", help="TOML file of \\[\\[device]] entries (ssh boards, adb phones).")]


def _gate(flag: str, text: str):
    return Annotated[Optional[float], typer.Option(flag, help=f"Gate: {text}.")]


MinTop1 = _gate("--min-top1", "minimum same-top-1 % vs the full model")
MaxKld = _gate("--max-kld", "maximum mean KL divergence vs the full model")
MaxKldP99 = _gate("--max-kld-p99", "maximum 99th-percentile KL divergence")
MaxPpl = _gate("--max-ppl-ratio", "maximum perplexity ratio vs the full model")
MinSqnr = _gate("--min-sqnr", "minimum logit SQNR (dB) vs the full model")
MinGreedy = _gate("--min-greedy-match", "minimum greedy match % vs the full model")
MinTps = _gate("--min-decode-tps", "minimum median decode tokens/s")
MinPrefill = _gate("--min-prefill-tps", "minimum median prefill tokens/s")
MaxTtft = _gate("--max-ttft", "maximum median time to first token (s)")
MaxBytes = _gate("--max-bytes", "maximum artifact bytes")
MaxRss = _gate("--max-rss-mb", "maximum peak RSS of the runner process (MB)")


def _print_not_runnable(report, folder: Path) -> None:
    out, g = _console(), report.quantization_gap
    out.print(f"[bold]{folder}[/]: {report.bundle.recipe.id}, {report.bundle.artifact.bytes / 1e6:.2f} MB")
    out.print(f"  {report.not_runnable_here}")
    out.print(f"  quantized eager model vs full model (build time): same-top-1 {with_se(g.same_top1_pct, g.same_top1_se_pct, '.1f')}%  "
              f"KLD {kld_text(g)} (p99 {g.kld_p99:.2e})  perplexity ratio {with_se(g.ppl_ratio, g.ppl_ratio_se, '.4f')}  greedy match {g.greedy_match_pct:.1f}%")
    out.print(f"  report: {folder / 'report.html'}")


def _print_check(report, folder: Path) -> None:
    from rich.table import Table

    if report.not_runnable_here:
        return _print_not_runnable(report, folder)
    out, s = _console(), report.summary
    out.print(f"[bold]{folder}[/]: {report.bundle.recipe.id} on {report.device.name}, {s.artifact_bytes / 1e6:.2f} MB")
    out.print(f"  accuracy vs full model: same-top-1 {with_se(s.same_top1_pct, s.same_top1_se_pct, '.1f')}%  "
              f"KLD {kld_text(s)} (p99 {s.kld_p99:.2e})  perplexity ratio {with_se(s.ppl_ratio, s.ppl_ratio_se, '.4f')}  SQNR {s.logit_sqnr_db:.1f} dB  "
              f"greedy match {s.greedy_match_pct:.1f}%")
    table = Table("runner", "load s", "TTFT ms", "prefill tok/s", "decode tok/s", "decode range", "peak RSS MB")
    for name, r in report.timed().items():
        dec, pre, ttft = r.latency.decode_tokens_per_s, r.latency.prefill_tokens_per_s, r.latency.ttft_s
        table.add_row(name, f"{r.load_s:.3f}", f"{ttft.median * 1000:.2f}" if ttft else "–",
                      f"{pre.median:.0f}" if pre else "–", f"{dec.median:.1f}" if dec else "–",
                      f"{dec.min:.1f}–{dec.max:.1f}" if dec else "–", f"{r.peak_rss_mb:.0f}")
    out.print(table)
    if report.simulator:
        out.print(f"  [yellow]not run on the NPU[/]: {report.simulator}")
    if report.npu_estimate is not None:
        e = report.npu_estimate
        out.print(f"  NPU estimate ({e.compiler}, {e.accelerator}): {e.estimated_ms:.3f} ms per {e.forward_tokens}-token "
                  f"forward (~{1000 / e.estimated_ms:.0f} tokens/s), SRAM {e.sram_bytes / 1024:.1f} KiB, flash "
                  f"{e.flash_bytes / 1024:.1f} KiB, CPU ops: {', '.join(e.cpu_ops) or 'none'}")
    if getattr(report, "npu_decode_estimate", None) is not None:
        d = report.npu_decode_estimate
        out.print(f"  NPU estimate of decode.pte (int8 KV cache): {d.estimated_ms:.3f} ms per token "
                  f"(~{1000 / d.estimated_ms:.0f} tokens/s), {len(d.delegates)} delegates")
    for name, sp in report.speedups.items():
        ttft = f"{sp.ttft:.2f}x" if sp.ttft else "–"
        out.print(f"  decode speed-up vs {name}: {sp.decode:.2f}x   time to first token: {ttft}")
    out.print(f"  report: {folder / 'report.html'}")


def check(
    bundle_dir: Annotated[Path, typer.Argument(help="Bundle folder made by `llamaport build`.")],
    device: DeviceOpt = "local",
    inventory: InventoryOpt = None,
    report_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Report folder; default: BUNDLE-report beside the bundle.")] = None,
    baseline_model: Annotated[Optional[Path], typer.Option("--baseline-model", help="Time this full model (eager, transformers) beside the bundle.")] = None,
    baseline_bundle: Annotated[Optional[Path], typer.Option("--baseline-bundle", help="Time this (fp32) bundle beside it.")] = None,
    decode_tokens: DecodeOpt = 64, warmup: WarmupOpt = 1, repeats: RepeatsOpt = 5,
    min_top1: MinTop1 = None, max_kld: MaxKld = None, max_kld_p99: MaxKldP99 = None, max_ppl_ratio: MaxPpl = None,
    min_sqnr: MinSqnr = None, min_greedy_match: MinGreedy = None, min_decode_tps: MinTps = None,
    min_prefill_tps: MinPrefill = None, max_ttft: MaxTtft = None, max_bytes: MaxBytes = None, max_rss_mb: MaxRss = None,
    as_json: JsonOpt = False,
):
    """Check a bundle on a device against its golden outputs: accuracy, latency, gates, report."""
    from llamaport import api
    from llamaport.reports import default_report_folder, write_check_report

    gates = {k: v for k, v in locals().items() if k.startswith(("min_", "max_"))}
    try:
        with _console(stderr=True).status("checking") as status:
            report = api.check(bundle_dir, device, baseline_model, baseline_bundle, gates, decode_tokens, warmup, repeats,
                               progress=lambda step: status.update(f"running {step} ..."), inventory=inventory)
        folder = write_check_report(report, report_dir or default_report_folder(bundle_dir))
        _print_json(report.to_dict()) if as_json else _print_check(report, folder)
        api.raise_if_failed(report)
    except LlamaportError as e:
        _fail(e)


def compare(
    reports: Annotated[list[Path], typer.Argument(help="report.json files (or their folders) from `llamaport check`.")],
    report_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for compare.json and compare.html.")] = Path("compare"),
    as_json: JsonOpt = False,
):
    """Put checked builds side by side: size, speed, accuracy and the Pareto front."""
    from rich.table import Table

    from llamaport import api
    from llamaport.reports import write_compare_report

    try:
        result = api.compare(reports)
        folder = write_compare_report(result, report_dir)
    except LlamaportError as e:
        _fail(e)
    if as_json:
        _print_json(result.to_dict())
        return
    table = Table("build", "MB", "decode tok/s", "x fp32 artifact", "x eager", "KLD", "same-top-1 %", "gates", "Pareto")
    for r in result.builds:
        table.add_row(r.name, f"{r.artifact_mb:.2f}", f"{r.decode_tokens_per_s:.1f}" + (" (est.)" if r.decode_source != "measured" else ""),
                      f"{r.speedup_vs_fp32_artifact:.2f}" if r.speedup_vs_fp32_artifact else "–",
                      f"{r.speedup_vs_eager:.2f}" if r.speedup_vs_eager else "–", f"{r.kld_mean:.2e}",
                      f"{r.same_top1_pct:.1f}", "pass" if r.passed else "FAIL", "yes" if r.name in result.pareto_front else "")
    out = _console()
    out.print(table)
    out.print(f"smallest passing: {result.smallest_passing}   fastest passing: {result.fastest_passing}")
    out.print(f"report: {folder / 'compare.html'}")


def _with_progress(label: str, run):
    """`run(progress)` under a status line that names each recipe's step; a llamaport error ends the command."""
    from llamaport.common_cli import _quiet_libraries

    _quiet_libraries()
    try:
        with _console(stderr=True).status(label) as status:
            return run(lambda r, step: status.update(f"{r}: {step} ..."))
    except LlamaportError as e:
        _fail(e)


def sweep(
    model: Annotated[Optional[Path], typer.Argument(help="Model to sweep. Default: the bundled model.")] = None,
    target: TargetOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for bundles/, reports/, compare/ and sweep.json.")] = Path("sweep"),
    recipe: Annotated[Optional[list[str]], typer.Option("--recipe", "-r", autocompletion=_complete_recipe,
                                                        help="Only these recipes (repeatable); default: all the target runs.")] = None,
    max_seq_len: Annotated[Optional[int], typer.Option("--max-seq-len", help="Context length of every bundle.")] = None,
    targets_file: TargetsFile = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier sweep in --out.")] = False,
    device: DeviceOpt = "local", decode_tokens: DecodeOpt = 64, warmup: WarmupOpt = 1, repeats: RepeatsOpt = 5,
    min_top1: MinTop1 = None, max_kld: MaxKld = None, max_ppl_ratio: MaxPpl = None, min_sqnr: MinSqnr = None,
    min_decode_tps: MinTps = None, max_bytes: MaxBytes = None, as_json: JsonOpt = False,
):
    """Build and check the target's recipes; name the smallest and the fastest bundle that pass."""
    from rich.table import Table

    from llamaport import api

    gates = {k: v for k, v in locals().items() if k.startswith(("min_", "max_")) and k != "max_seq_len"}
    result = _with_progress("sweeping", lambda progress: api.sweep(
        model, target, out_dir, tuple(recipe or ()), max_seq_len, targets_file, overwrite, device, gates, decode_tokens,
        warmup, repeats, progress=progress))
    if as_json:
        _print_json(result.to_dict())
        return
    table = Table("recipe", "status")
    for e in result.recipes:
        table.add_row(e.recipe, e.status)
    out = _console()
    out.print(table)
    out.print(f"smallest passing: {result.smallest_passing}   fastest passing: {result.fastest_passing}")
    out.print(f"sweep: {out_dir / 'sweep.json'}   compare: {out_dir / 'compare' / 'compare.html'}")


def tune(
    model: Annotated[Optional[Path], typer.Argument(help="Model to tune for. Default: the bundled model.")] = None,
    target: TargetOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for tune.json, pareto.png, fastest.json, smallest.json and sweep/.")] = Path("tune"),
    recipe: Annotated[Optional[list[str]], typer.Option("--recipe", "-r", autocompletion=_complete_recipe,
                                                        help="Only these candidates (repeatable); default: every weight-quantized CPU recipe the target runs.")] = None,
    max_builds: Annotated[int, typer.Option("--max-builds", help="Candidates built and checked at most, after the eager proxies prune.")] = 6,
    max_seq_len: Annotated[Optional[int], typer.Option("--max-seq-len", help="Context length of every bundle.")] = None,
    targets_file: TargetsFile = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier tune in --out.")] = False,
    device: DeviceOpt = "local", decode_tokens: DecodeOpt = 64, warmup: WarmupOpt = 1, repeats: RepeatsOpt = 5,
    as_json: JsonOpt = False,
):
    """Search recipes for the fastest and the smallest bundle that pass the target's gates: eager proxies
    prune, the survivors are built and checked, the winners are written as build plans."""
    from rich.table import Table

    from llamaport import api

    result = _with_progress("tuning", lambda progress: api.tune(
        model, target, out_dir, tuple(recipe or ()), max_builds, max_seq_len, targets_file, overwrite, device,
        decode_tokens, warmup, repeats, progress=progress))
    if as_json:
        _print_json(result.to_dict())
        return
    table = Table("candidate", "weights MB", "proxy KLD", "proxy top-1 %", "status")
    for c in sorted(result.candidates, key=lambda c: c.weight_bytes):
        table.add_row(c.recipe, f"{c.weight_bytes / 1e6:.3f}", with_se(c.proxy_kld, c.proxy_kld_se, ".2e"),
                      with_se(c.proxy_same_top1_pct, c.proxy_same_top1_se_pct, ".1f"), c.status)
    out = _console()
    out.print(table)
    out.print(f"fastest passing: {result.fastest_passing} ({result.fastest_config})")
    out.print(f"smallest passing: {result.smallest_passing} ({result.smallest_config})")
    out.print(f"Pareto front: {', '.join(result.pareto_front)}   plot: {result.plot}")
    if result.fastest_config:
        out.print(f"rebuild the fastest: llamaport build --config {result.fastest_config} --out <folder>")


def generate(
    bundle_dir: Annotated[Path, typer.Argument(help="Bundle folder made by `llamaport build`.")],
    prompt: Annotated[str, typer.Argument(help="Text to continue.")],
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-n", help="Tokens to generate at most (EOS stops earlier).")] = 64,
):
    """Stream greedy text from a bundle with its own runtime (BOS first, stopping at EOS, as an app does)."""
    import sys

    from llamaport import api
    from llamaport.common_cli import _quiet_libraries

    _quiet_libraries()
    try:
        sys.stdout.write(prompt)
        api.generate(bundle_dir, prompt, max_new_tokens, on_text=lambda piece: (sys.stdout.write(piece), sys.stdout.flush()))
        sys.stdout.write("\n")
    except LlamaportError as e:
        _fail(e)
