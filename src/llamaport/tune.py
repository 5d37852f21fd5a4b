"""`llamaport tune`: find the fastest and the smallest bundle that pass a target's gates.

1. Proxy every candidate recipe (group sizes, GPTQ, sensitivity-chosen 8-bit units, embedding and output
   settings) in eager PyTorch on the eval text (compile.quant_proxy): KL divergence, same-top-1 and
   perplexity ratio with their standard errors, and the stored weight bytes; no export.
2. Prune before any export: a candidate whose proxy misses an accuracy gate beyond the noise (by more than
   two standard errors), then one that another candidate beats on both bytes and proxy KLD.
3. Build and check the survivors with the sweep (its bundles, reports and comparison), up to --max-builds,
   spread along the proxy front.
4. Name the fastest and the smallest passing bundle, plot the measured Pareto front of size, decode speed
   and KL divergence (tune/pareto.png), and write each winner as a build plan (`build --config`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

from llamaport.errors import ConfigError
from llamaport.runtime_tests.latency import LatencyProtocol
from llamaport.typed import Versioned

TUNE_SCHEMA_VERSION = 1
ACCURACY_GATES = ("kld_mean", "same_top1_pct", "ppl_ratio")


@dataclass(frozen=True)
class TuneRequest:
    model: Path
    target: str
    out: Path
    recipes: tuple[str, ...] = ()  # default: every 4-bit CPU recipe the target runs, and 8-bit ones
    max_builds: int = 6
    max_seq_len: int | None = None
    eval_text: Path | None = None
    targets_file: Path | None = None
    overwrite: bool = False
    device: str = "local"
    protocol: LatencyProtocol = field(default_factory=LatencyProtocol)


@dataclass(frozen=True)
class Candidate:
    recipe: str
    weight_bytes: int  # stored weights, estimated from the plan (codes + scales)
    proxy_kld: float
    proxy_kld_se: float | None
    proxy_same_top1_pct: float
    proxy_same_top1_se_pct: float | None
    proxy_ppl_ratio: float
    proxy_ppl_ratio_se: float | None
    status: str  # built | pruned: proxy misses a gate | pruned: dominated | pruned: over --max-builds
    reason: str | None = None
    units_at_8_bits: tuple[str, ...] = ()


@dataclass(frozen=True)
class TuneResult(Versioned):
    SCHEMA_VERSION: ClassVar[int] = TUNE_SCHEMA_VERSION
    KIND: ClassVar[str] = "tune"
    ADVICE: ClassVar[str] = "run the tuner again with this llamaport"

    schema_version: int
    model: str
    target: str
    candidates: tuple[Candidate, ...]
    sweep: str  # the sweep folder: bundles/, reports/, compare/, sweep.json
    fastest_passing: str | None
    smallest_passing: str | None
    pareto_front: tuple[str, ...]
    fastest_config: str | None  # build plans: `llamaport build --config <file>` rebuilds the winner
    smallest_config: str | None
    plot: str | None


def default_candidates(target) -> list[str]:
    """The CPU recipes worth searching: weight-quantized, fp32 compute, rounded in a way the proxy reproduces."""
    from llamaport.quantize import RECIPES
    from llamaport.quantize.recipes import recipes_for

    return [r for r in recipes_for(target)
            if RECIPES[r].scheme.compute == "fp32" and RECIPES[r].scheme.linear.kind in ("8da4w", "4w", "8da8w")
            and not RECIPES[r].scheme.static and _unproxied_rounding(r) is None]


def _unproxied_rounding(recipe_id: str) -> str | None:
    """onnxruntime's own asymmetric RTN and HQQ (ids -rtn, -hqq) happen inside its quantizer; the eager proxy
    (compile.quant_proxy) has no faithful copy of them, and a proxy that guesses would prune by a wrong number."""
    from llamaport.quantize import RECIPES
    from llamaport.quantize.schemes import ONNX_ONLY_ALGORITHMS

    found = RECIPES[recipe_id].scheme.algorithms() & set(ONNX_ONLY_ALGORITHMS)
    return next(iter(sorted(found)), None)


def _proxy_all(request: TuneRequest, target, recipes: list[str], progress) -> list[Candidate]:
    import torch

    from llamaport.compile.calibration import DEFAULT_SAMPLES, build_calibration_set, calibration_path
    from llamaport.compile.eval_data import DEFAULT_EVAL_TEXT, build_eval_set
    from llamaport.compile.golden_build import full_reference
    from llamaport.compile.quant_plan import PlanMemo, build_plan, uniform_plan
    from llamaport.compile.quant_proxy import proxy_logits, weight_bytes
    from llamaport.compile.sources import load_checkpoint
    from llamaport.quantize import RECIPES
    from llamaport.runtime_tests.metrics import compare_to_reference
    from llamaport.runtime_tests.tokenizer import load_tokenizer

    ckpt = load_checkpoint(Path(request.model))
    cfg = ckpt.config
    context = min(request.max_seq_len or target.default_context_len, cfg["max_position_embeddings"])
    tok = load_tokenizer(ckpt.tokenizer.path)
    eval_set = build_eval_set(tok, request.eval_text, context, False)
    full = full_reference(ckpt, eval_set)
    calibration = None
    memo = PlanMemo()  # sensitivities, Hessians and grids measured once for all the candidates
    out = []
    for recipe_id in recipes:
        progress(recipe_id, "proxy")
        recipe = RECIPES[recipe_id]
        scheme = recipe.scheme
        if scheme.calibrated and calibration is None:
            source = calibration_path(Path(request.model), None, Path(request.eval_text or DEFAULT_EVAL_TEXT))
            calibration = build_calibration_set(tok, source, DEFAULT_SAMPLES, min(context, 64), cfg["vocab_size"])
        plan = (build_plan(ckpt, scheme, calibration.windows, recipe.runtime, memo) if scheme.calibrated
                else uniform_plan(scheme, cfg["num_hidden_layers"]))
        with torch.inference_mode():
            logits = proxy_logits(ckpt, scheme, plan, recipe.runtime, eval_set.windows(), context)
        m = compare_to_reference(full, logits, eval_set.ids)
        kept = tuple(u.unit for u in plan.units if u.quant.kind in ("8da8w", "8w") and scheme.keep8)
        out.append(Candidate(recipe_id, weight_bytes(cfg, scheme, plan), m["kld_mean"], m.get("kld_se"),
                             m["same_top1_pct"], m.get("same_top1_se_pct"), m["ppl_ratio"], m.get("ppl_ratio_se"),
                             "proxied", units_at_8_bits=kept))
    return out


def _gate_miss(c: Candidate, gates) -> str | None:
    """A proxy that misses one of the target's accuracy gates beyond the noise (runtime_tests.gates: by more
    than two standard errors); a miss within the noise is built and measured."""
    from types import SimpleNamespace

    from llamaport.runtime_tests.gates import missed_gates

    proxy = SimpleNamespace(kld_mean=c.proxy_kld, kld_se=c.proxy_kld_se, same_top1_pct=c.proxy_same_top1_pct,
                            same_top1_se_pct=c.proxy_same_top1_se_pct, ppl_ratio=c.proxy_ppl_ratio,
                            ppl_ratio_se=c.proxy_ppl_ratio_se)
    accuracy = [g for g in gates if g.metric in ACCURACY_GATES]
    beyond = [f for f in missed_gates(proxy, accuracy) if f.beyond_noise is not False]
    return f"proxy {beyond[0].metric} {beyond[0].value:.4g} misses {beyond[0].gate}" if beyond else None


def _prune(candidates: list[Candidate], gates, max_builds: int) -> list[Candidate]:
    from dataclasses import replace

    out = [replace(c, status="pruned: proxy misses a gate", reason=why) if (why := _gate_miss(c, gates)) else c
           for c in candidates]
    alive = [c for c in out if c.status == "proxied"]

    def beaten(c):
        return any(o.weight_bytes <= c.weight_bytes and o.proxy_kld <= c.proxy_kld and
                   (o.weight_bytes < c.weight_bytes or o.proxy_kld < c.proxy_kld) for o in alive if o is not c)
    front = sorted((c for c in alive if not beaten(c)), key=lambda c: c.weight_bytes)
    if len(front) > max_builds:  # spread the builds along the front, both ends included
        step = (len(front) - 1) / (max_builds - 1) if max_builds > 1 else 0
        chosen = {front[round(i * step)].recipe for i in range(max_builds)}
    else:
        chosen = {c.recipe for c in front}
    front_names = {c.recipe for c in front}
    result = []
    for c in out:
        if c.status != "proxied":
            result.append(c)
        elif c.recipe in chosen:
            result.append(replace(c, status="built"))
        elif c.recipe in front_names:
            result.append(replace(c, status="pruned: over --max-builds"))
        else:
            result.append(replace(c, status="pruned: dominated", reason="another candidate is smaller with lower proxy KLD"))
    return result


def _recipe_id(compared_name: str | None) -> str | None:
    """compare names a calibrated build "<recipe> (calibrated on <text> xN)"; the tuner speaks recipe ids."""
    return None if compared_name is None else compared_name.split(" (", 1)[0]


def _write_config(request: TuneRequest, recipe: str | None, path: Path) -> str | None:
    if recipe is None:
        return None
    from llamaport.compile.pipeline import BuildRequest, plan_build

    build = plan_build(BuildRequest(model=Path(request.model), recipe=recipe, target=request.target,
                                    out=Path(recipe), max_seq_len=request.max_seq_len,
                                    eval_text=request.eval_text, targets_file=request.targets_file))
    path.write_text(json.dumps(build.plan(), indent=2) + "\n")
    return str(path)


def run_tune(request: TuneRequest, progress: Callable[[str, str], None] = lambda recipe, step: None) -> TuneResult:
    from llamaport.quantize import check_recipe_runs_on, resolve_recipe
    from llamaport.sweep import SweepRequest, check_sweep_inputs, run_sweep
    from llamaport.targets import resolve_target

    target = resolve_target(request.target, request.targets_file)
    if request.max_builds < 1:
        raise ConfigError(f"--max-builds must be at least 1, got {request.max_builds}")
    check_sweep_inputs(request.model, tuple(request.recipes), request.max_seq_len, request.out)
    for r in request.recipes:
        check_recipe_runs_on(resolve_recipe(r, target), target)
        if (algorithm := _unproxied_rounding(r)) is not None:
            raise ConfigError(f"recipe {r}: tune's eager proxy cannot reproduce onnxruntime's own {algorithm} rounding; "
                              f"measure it with `llamaport sweep -r {r}` instead")
    recipes = list(request.recipes) or default_candidates(target)
    if not recipes:
        raise ConfigError(f"target {target.name} runs no weight-quantized CPU recipe to tune")
    out = Path(request.out)
    _prepare_tune(out, request.overwrite)
    candidates = _prune(_proxy_all(request, target, recipes, progress), target.gates, request.max_builds)
    built = tuple(c.recipe for c in candidates if c.status == "built")
    sweep = run_sweep(SweepRequest(model=Path(request.model), target=request.target, out=out / "sweep", recipes=built,
                                   max_seq_len=request.max_seq_len, eval_text=request.eval_text,
                                   targets_file=request.targets_file, device=request.device, protocol=request.protocol),
                      progress)
    plot = _plot(out / "sweep", out / "pareto.png", sweep)
    fastest, smallest = _recipe_id(sweep.fastest_passing), _recipe_id(sweep.smallest_passing)
    result = TuneResult(schema_version=TUNE_SCHEMA_VERSION, model=str(request.model), target=target.name,
                        candidates=tuple(candidates), sweep=str(out / "sweep"), fastest_passing=fastest,
                        smallest_passing=smallest, pareto_front=tuple(_recipe_id(n) for n in sweep.pareto_front),
                        fastest_config=_write_config(request, fastest, out / "fastest.json"),
                        smallest_config=_write_config(request, smallest, out / "smallest.json"),
                        plot=plot)
    result.write(out / "tune.json")
    return result


def _prepare_tune(out: Path, overwrite: bool) -> None:
    import shutil

    if out.exists():
        if not overwrite:
            raise ConfigError(f"{out}: already exists; choose another --out or pass --overwrite")
        if any(out.iterdir()) and not (out / "tune.json").is_file():
            raise ConfigError(f"{out}: not a finished tune (no tune.json); remove it yourself or choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)


def _plot(sweep_dir: Path, path: Path, sweep) -> str | None:
    from llamaport.runtime_tests import plots
    from llamaport.runtime_tests.compare import _row
    from llamaport.runtime_tests.report import Report

    reports = [Report.read(Path(e.report)) for e in sweep.recipes if e.report]
    rows = [_row(r) for r in reports if r.summary is not None]
    if not rows:
        return None
    path.write_bytes(plots.pareto(rows, set(sweep.pareto_front)))
    return str(path)
