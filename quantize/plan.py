"""A per-layer quantization plan: what each linear unit of the model gets, and the GPTQ grids chosen for it.

A unit is what onnxruntime-genai's builder makes one MatMul of (q, k and v are one `qkv_proj`), so the same
plan means the same thing in an ExecuTorch bundle (three linears at one setting) and an ONNX bundle (one
MatMulNBits). The plan is computed once per build from calibration text (compile.quant_plan) and recorded
in the manifest, layer by layer."""

from __future__ import annotations

from dataclasses import dataclass, field

from llamaport.quantize.schemes import LinearQuant

# unit suffix -> (Hugging Face weight suffixes, ExecuTorch/Meta module suffixes, onnxruntime-genai node)
UNIT_PARTS = {
    "attn.qkv": (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
                 ("attention.wq", "attention.wk", "attention.wv"), "attn/qkv_proj/MatMul"),
    "attn.o": (("self_attn.o_proj",), ("attention.wo",), "attn/o_proj/MatMul"),
    "mlp.gate": (("mlp.gate_proj",), ("feed_forward.w1",), "mlp/gate_proj/MatMul"),
    "mlp.up": (("mlp.up_proj",), ("feed_forward.w3",), "mlp/up_proj/MatMul"),
    "mlp.down": (("mlp.down_proj",), ("feed_forward.w2",), "mlp/down_proj/MatMul"),
}
OUTPUT_UNIT = "output"


def units(n_layers: int) -> list[str]:
    return [f"layers.{i}.{u}" for i in range(n_layers) for u in UNIT_PARTS] + [OUTPUT_UNIT]


def hf_linears(unit: str) -> tuple[str, ...]:
    """The Hugging Face module names of a unit's linears (weights are these + '.weight')."""
    if unit == OUTPUT_UNIT:
        return ("lm_head",)
    _, i, part = unit.split(".", 2)
    return tuple(f"model.layers.{i}.{p}" for p in UNIT_PARTS[part][0])


def meta_linears(unit: str) -> tuple[str, ...]:
    """The same linears' fully qualified names in ExecuTorch's Llama (Meta names)."""
    if unit == OUTPUT_UNIT:
        return ("output",)
    _, i, part = unit.split(".", 2)
    return tuple(f"layers.{i}.{p}" for p in UNIT_PARTS[part][1])


def genai_node(unit: str) -> str:
    """The unit's MatMul in onnxruntime-genai's builder graph (before quantization renames it)."""
    if unit == OUTPUT_UNIT:
        return "/lm_head/MatMul"
    _, i, part = unit.split(".", 2)
    return f"/model/layers.{i}/{UNIT_PARTS[part][2]}"


@dataclass(frozen=True)
class UnitPlan:
    unit: str
    quant: LinearQuant  # what the unit got
    kld_alone: float | None = None  # KL divergence of the calibration text with only this unit at 4 bits


@dataclass
class QuantPlan:
    """Per unit its setting; for GPTQ units, per Hugging Face linear name, the grid (quantize.gptq.Grid)
    in Hugging Face row order (q/k rows as transformers has them)."""

    units: tuple[UnitPlan, ...]
    grids: dict = field(default_factory=dict)

    def quant_of(self, unit: str) -> LinearQuant:
        return next(u.quant for u in self.units if u.unit == unit)

    def by_meta_linear(self) -> dict[str, LinearQuant]:
        return {name: u.quant for u in self.units for name in meta_linears(u.unit)}
