"""The one place that maps a QuantScheme (and a per-layer plan, quantize.plan) to torchao configs, applied
with torchao's `quantize_`.

Applied to ExecuTorch's own Llama module (Meta names: `output` is the output layer). The choices
mirror ExecuTorch's export_llama: 8da*w use Int8DynamicActivationIntxWeightConfig with HQQ scales,
which XNNPACK lowers to its dynamically quantized linear kernels. 8w uses a config whose graph form
XNNPACK lowers correctly (see quantize.executorch_int8_weight); 4w is group-wise weight-only int4,
which ExecuTorch 1.5.1 cannot lower correctly for XNNPACK, so XNNPACK targets refuse it.
"""

from __future__ import annotations

import torch
from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig, quantize_
from torchao.quantization.granularity import PerAxis, PerGroup

from llamaport.errors import ConfigError
from llamaport.quantize.executorch_int8_weight import ExecuTorchInt8WeightOnlyConfig
from llamaport.quantize.schemes import EmbeddingQuant, LinearQuant, QuantScheme

OUTPUT_LAYER = "output"


def _granularity(group_size: int | None):
    return PerAxis(0) if group_size is None else PerGroup(group_size)


def linear_config(q: LinearQuant):
    if q.kind == "fp32":
        return None
    if q.kind == "8w":
        return ExecuTorchInt8WeightOnlyConfig()
    bits = torch.int4 if q.kind in ("4w", "8da4w") else torch.int8
    if q.kind.startswith("8da"):
        return Int8DynamicActivationIntxWeightConfig(
            weight_dtype=bits, weight_granularity=_granularity(q.group_size),
            intx_choose_qparams_algorithm="hqq_scale_only",
        )
    return IntxWeightOnlyConfig(weight_dtype=bits, granularity=_granularity(q.group_size))


def embedding_config(q: EmbeddingQuant):
    if q.bits == 32:
        return None
    # HQQ scales, as ExecuTorch's export_llama rounds its embeddings (EmbeddingQuantHandler, quantize_with_hqq
    # on by default): the same table codes and scales as its recommended `--embedding-quantize 4,32`.
    return IntxWeightOnlyConfig(weight_dtype=getattr(torch, f"int{q.bits}"), granularity=_granularity(q.group_size),
                                intx_choose_qparams_algorithm="hqq_scale_only")


def check_group_sizes(scheme: QuantScheme, widths: dict[str, list[int]]) -> None:
    """Linears whose input width a group does not divide are padded (PaddedInputLinear: exact); an
    embedding is a table, not a product, and cannot be padded that way: its row width must divide."""
    group = scheme.embedding.group_size
    for width in widths.get("embedding", []) if group else []:
        if width % group:
            raise ConfigError(
                f"scheme {scheme.id}: the embedding has rows of width {width}, not a multiple of group size {group}; "
                f"pick an embedding group size that divides {width}"
            )


class PaddedInputLinear(torch.nn.Linear):
    """A linear whose input is zero-padded to a whole number of quantization groups, with zero weight
    columns for the padding: x·Wᵀ is unchanged (each added term is 0·0), and every group is whole, as
    onnxruntime's MatMulNBits pads K internally. ExecuTorch's own 8da4w instead leaves such layers in fp32."""

    def __init__(self, linear: torch.nn.Linear, group: int):
        width = linear.in_features
        padded = -(-width // group) * group
        super().__init__(padded, linear.out_features, bias=linear.bias is not None, device="meta")
        self.original_in_features = width
        self.weight = torch.nn.Parameter(torch.nn.functional.pad(linear.weight.detach(), (0, padded - width)),
                                         requires_grad=False)
        self.bias = linear.bias

    def forward(self, x):
        x = torch.nn.functional.pad(x, (0, self.in_features - self.original_in_features))
        return torch.nn.functional.linear(x, self.weight, self.bias)


def pad_for_groups_(model: torch.nn.Module, settings: dict[str, LinearQuant]) -> dict[str, int]:
    """Replace each linear whose setting's group does not divide its input width; returns {fqn: padded width}."""
    padded = {}
    for fqn, q in settings.items():
        parent_name, _, child = fqn.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, child, None)
        if q.group_size and isinstance(linear, torch.nn.Linear) and linear.in_features % q.group_size:
            setattr(parent, child, PaddedInputLinear(linear, q.group_size))
            padded[fqn] = getattr(parent, child).in_features
    return padded


def layer_settings(model: torch.nn.Module, scheme: QuantScheme, plan=None) -> dict[str, LinearQuant]:
    """Each linear's setting: the plan's (quantize.plan) where there is one, else the scheme's family."""
    per_linear = plan.by_meta_linear() if plan is not None else {}
    return {fqn: per_linear.get(fqn, scheme.output_quant if fqn == OUTPUT_LAYER else scheme.linear)
            for fqn, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def apply_scheme_(model: torch.nn.Module, scheme: QuantScheme, plan=None) -> torch.nn.Module:
    """Quantize `model` in place: each linear by its setting (a plan's, else its family's), linears whose
    width a group does not divide padded first, then the plan's GPTQ grids written over torchao's rounding,
    and the embedding by its own setting."""
    settings = layer_settings(model, scheme, plan)
    pad_for_groups_(model, settings)
    by_setting: dict[LinearQuant, set[str]] = {}
    for fqn, q in settings.items():
        by_setting.setdefault(q, set()).add(fqn)
    for q, names in by_setting.items():
        config = linear_config(q)
        if config is not None:
            quantize_(model, config, filter_fn=lambda m, fqn, names=names: isinstance(m, torch.nn.Linear) and fqn in names)
    for fqn, grid in (plan.grids.items() if plan is not None else ()):
        _write_grid(model.get_submodule(fqn), grid)
    emb = embedding_config(scheme.embedding)
    if emb is not None:
        quantize_(model, emb, filter_fn=lambda m, fqn: isinstance(m, torch.nn.Embedding))
    return model


def _write_grid(linear: torch.nn.Module, grid) -> None:
    """Replace torchao's codes and scales with GPTQ's (same layout: int8 codes, one scale per group)."""
    from torchao.quantization.quantize_.workflows.intx.intx_unpacked_to_int8_tensor import IntxUnpackedToInt8Tensor

    t = linear.weight
    if not isinstance(t, IntxUnpackedToInt8Tensor) or tuple(grid.codes.shape) != tuple(t.qdata.shape) \
            or t.scale.numel() != grid.scales.numel():
        raise ValueError(f"GPTQ grid {tuple(grid.codes.shape)} does not fit the quantized weight {tuple(t.shape)}")
    linear.weight = torch.nn.Parameter(IntxUnpackedToInt8Tensor(
        qdata=grid.codes.to(torch.int8), scale=grid.scales.reshape(t.scale.shape).to(t.scale.dtype),
        zero_point=torch.zeros_like(t.zero_point), target_dtype=t.target_dtype, block_size=t.block_size,
        dtype=t.dtype, activation_quantization=t.activation_quantization), requires_grad=False)


def describe(scheme: QuantScheme) -> dict:
    """What was applied to each layer family, as torchao's own config_to_dict records it (None: fp32)."""
    from torchao.core.config import config_to_dict

    def record(config):
        return None if config is None else config_to_dict(config)
    return {"linear": record(linear_config(scheme.linear)), "output": record(linear_config(scheme.output_quant)),
            "embedding": record(embedding_config(scheme.embedding))}
