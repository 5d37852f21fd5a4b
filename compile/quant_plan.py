"""The per-layer quantization plan of a calibrated CPU recipe (`-gptq`, `-keep8xN`), computed on the
calibration text with the full-precision transformers model, before the export:

- sensitivity (`-keep8xN`): each linear unit alone rounded to the recipe's 4-bit setting, everything else
  full precision; the KL divergence of the calibration windows against the full model ranks the units, and
  the N that cost most stay at 8 bits;
- GPTQ (`-gptq`): each 4-bit unit's linears rounded column by column against the Hessian of their inputs
  over the same windows (quantize.gptq), on the grid of the runtime's own rounding rule.

Hessians are collected from the full model's activations in one pass (torchao's GPTQ default: inputs are
not re-quantized layer by layer), which keeps the cost at one forward per window."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from llamaport.compile.checkpoint import LlamaCheckpoint
from llamaport.compile.layout import hf_to_meta_rope
from llamaport.quantize.gptq import HessianRecorder, gptq, rtn
from llamaport.quantize.plan import OUTPUT_UNIT, QuantPlan, UnitPlan, genai_node, hf_linears, meta_linears, units
from llamaport.quantize.schemes import EIGHT_BIT_OF, LinearQuant, QuantScheme

log = logging.getLogger(__name__)


def unit_quant(scheme: QuantScheme, unit: str) -> LinearQuant:
    return scheme.output_quant if unit == OUTPUT_UNIT else scheme.linear


def uniform_plan(scheme: QuantScheme, n_layers: int) -> QuantPlan:
    """Every unit as the scheme's families say (no calibration): what the manifest lists for plain recipes."""
    return QuantPlan(tuple(UnitPlan(u, unit_quant(scheme, u)) for u in units(n_layers)))


def _eight_bit(q: LinearQuant, runtime: str) -> LinearQuant:
    """ExecuTorch keeps a unit at 8 bits per output channel (XNNPACK's qc8w kernels); onnxruntime as 8-bit
    MatMulNBits in the body's blocks (the builder's own mixed-precision form)."""
    return LinearQuant(EIGHT_BIT_OF[q.kind], q.group_size) if runtime == "onnxruntime" else q.eight_bit


@dataclass
class PlanMemo:
    """What plans measure that depends only on the model, the calibration windows and the rounding rule, kept
    across the plans of one run: the tuner plans many recipes (keep8x1 ... x8, with and without GPTQ) on one
    text, and a unit's sensitivity, a linear's Hessian and its GPTQ grid are the same in each. One memo serves
    one checkpoint and one set of windows only; without one, each plan measures everything itself."""

    model: object = None  # the full transformers model
    reference: list | None = None  # its log-probabilities of the calibration windows
    kld: dict = field(default_factory=dict)  # (unit, group size, rule) -> KL divergence alone
    hessians: dict = field(default_factory=dict)  # Hugging Face linear name -> sum of x xᵀ
    grids: dict = field(default_factory=dict)  # (linear name, bits, group, rule, gptq?) -> Grid


def _modules(model) -> dict[str, torch.nn.Linear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def _scale_rule(runtime: str) -> str:
    return "mlas" if runtime == "onnxruntime" else "hqq"


def _group(q: LinearQuant, width: int) -> int:
    return q.group_size or width


@torch.inference_mode()
def _window_logprobs(model, windows: list[list[int]]) -> list[torch.Tensor]:
    return [torch.log_softmax(model(torch.tensor([w])).logits[0].double(), dim=-1) for w in windows]


def _sensitivities(memo: PlanMemo, windows, candidates: list[str], scheme: QuantScheme, rule: str) -> dict[str, float]:
    """KL(full || model with only `unit` at 4 bits), mean over the calibration positions, per unit."""
    model = memo.model
    modules = _modules(model)
    if memo.reference is None:
        memo.reference = _window_logprobs(model, windows)
    kld = {}
    for unit in candidates:
        q = unit_quant(scheme, unit)
        key = (unit, q.group_size, rule)  # measured by rounding, whatever the recipe's algorithm
        if key not in memo.kld:
            memo.kld[key] = _kld_alone(model, modules, memo, windows, unit, q, rule)
        kld[unit] = memo.kld[key]
    return kld


def _kld_alone(model, modules, memo: PlanMemo, windows, unit: str, q: LinearQuant, rule: str) -> float:
    originals = {}
    for name in hf_linears(unit):
        m = modules[name]
        originals[name] = m.weight
        w = m.weight.detach()
        grid = _grid(memo, name, w, None, 4, _group(q, w.shape[1]), rule)
        m.weight = torch.nn.Parameter(grid.dequantize()[:, : w.shape[1]], requires_grad=False)
    try:
        logprobs = _window_logprobs(model, windows)
    finally:
        for name, w in originals.items():
            modules[name].weight = w
    per_window = [(r.exp() * (r - c)).sum(-1).mean() for r, c in zip(memo.reference, logprobs)]
    return float(torch.stack(per_window).mean())


def _grid(memo: PlanMemo, name: str, weight: torch.Tensor, hessian, bits: int, group: int, rule: str):
    """A linear's grid, by GPTQ where a Hessian is given, else by rounding; once per memo."""
    key = (name, bits, group, rule, hessian is not None)
    if key not in memo.grids:
        memo.grids[key] = rtn(weight, bits, group, rule) if hessian is None else gptq(weight, hessian, bits, group, rule)
    return memo.grids[key]


def _hessians(memo: PlanMemo, windows, names: list[str]) -> dict[str, torch.Tensor]:
    """The Hessians of `names`, recorded in one pass over the windows for those the memo lacks."""
    missing = [n for n in names if n not in memo.hessians]
    if missing:
        modules = _modules(memo.model)
        recorder = HessianRecorder({n: modules[n] for n in missing})
        try:
            with torch.inference_mode():
                for w in windows:
                    memo.model(torch.tensor([w]))
        finally:
            memo.hessians.update(recorder.close())
    return {n: memo.hessians[n] for n in names}


def build_plan(ckpt: LlamaCheckpoint, scheme: QuantScheme, windows: list[list[int]], runtime: str,
               memo: PlanMemo | None = None) -> QuantPlan:
    """The plan of a calibrated CPU recipe, with its GPTQ / 8-bit grids keyed for the runtime's exporter:
    ExecuTorch by Meta module name (q/k rows in Meta's interleaved order), onnxruntime-genai by node."""
    from llamaport.compile.reference import full_model

    memo = memo if memo is not None else PlanMemo()
    if memo.model is None:
        memo.model = full_model(ckpt)
    cfg = ckpt.config
    modules = _modules(memo.model)
    rule = _scale_rule(runtime)
    all_units = units(cfg["num_hidden_layers"])
    four_bit = [u for u in all_units if unit_quant(scheme, u).kind in EIGHT_BIT_OF]
    if cfg["tie_word_embeddings"] and OUTPUT_UNIT in four_bit and runtime == "onnxruntime":
        four_bit.remove(OUTPUT_UNIT)  # the builder shares the tied table; its own rounding stays
    kld = _sensitivities(memo, windows, four_bit, scheme, rule) if scheme.keep8 else {}
    kept = set(sorted(kld, key=kld.get, reverse=True)[: scheme.keep8])
    plans = tuple(UnitPlan(u, _eight_bit(unit_quant(scheme, u), runtime) if u in kept else unit_quant(scheme, u), kld.get(u))
                  for u in all_units)
    grids = {}
    gptq_units = [u for u in four_bit if u not in kept] if "gptq" in scheme.algorithms() else []
    if gptq_units:
        hessians = _hessians(memo, windows, [n for u in gptq_units for n in hf_linears(u)])
        for u in gptq_units:
            q = unit_quant(scheme, u)
            per_linear = [_grid(memo, n, modules[n].weight.detach(), hessians[n], 4, _group(q, modules[n].in_features), rule)
                          for n in hf_linears(u)]
            grids.update(_keyed(u, per_linear, cfg, runtime))
            log.info("gptq %s done", u)
    if runtime == "onnxruntime":  # 8-bit units: MatMulNBits at 8 bits, in the body's blocks (quantize.onnx_grid)
        for u in kept:
            block = unit_quant(scheme, u).group_size or modules[hf_linears(u)[0]].in_features
            grids.update(_keyed(u, [_grid(memo, n, modules[n].weight.detach(), None, 8, block, rule) for n in hf_linears(u)],
                                cfg, runtime))
    return QuantPlan(plans, grids)


def _keyed(unit: str, per_linear: list, cfg: dict, runtime: str) -> dict:
    from llamaport.quantize.gptq import Grid

    if runtime == "onnxruntime":  # the builder packs q, k and v into one MatMul, rows in that order
        return {genai_node(unit): Grid(torch.cat([g.codes for g in per_linear]), torch.cat([g.scales for g in per_linear]),
                                       per_linear[0].group, per_linear[0].bits)}
    out = {}
    for name, grid in zip(meta_linears(unit), per_linear):
        heads = {"attention.wq": cfg["num_attention_heads"], "attention.wk": cfg["num_key_value_heads"]}.get(
            name.split(".", 2)[-1])
        if heads is not None:  # the export's weights are in Meta's interleaved q/k row order
            grid = Grid(hf_to_meta_rope(grid.codes, heads), hf_to_meta_rope(grid.scales, heads), grid.group, grid.bits)
        out[name] = grid
    return out
