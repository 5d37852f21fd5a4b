"""The one place that maps a QuantScheme to torchao configs, applied with torchao's `quantize_`.

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
    return IntxWeightOnlyConfig(weight_dtype=getattr(torch, f"int{q.bits}"), granularity=_granularity(q.group_size))


def check_group_sizes(scheme: QuantScheme, widths: dict[str, list[int]]) -> None:
    """Refuse a group size that does not divide a layer's input width, rather than silently skipping
    the layer (ExecuTorch's own 8da4w does skip it) or changing the group size."""
    for family, group in scheme.group_sizes().items():
        for width in widths.get(family, []):
            if width % group:
                raise ConfigError(
                    f"scheme {scheme.id}: {family} layers have input width {width}, "
                    f"not a multiple of group size {group}; pick a group size that divides {width}"
                )


def apply_scheme_(model: torch.nn.Module, scheme: QuantScheme) -> torch.nn.Module:
    """Quantize `model` in place: body linears, output layer and embedding each by their own setting."""
    body = linear_config(scheme.linear)
    if body is not None:
        quantize_(model, body, filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn != OUTPUT_LAYER)
    head = linear_config(scheme.output_quant)
    if head is not None:
        quantize_(model, head, filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn == OUTPUT_LAYER)
    emb = embedding_config(scheme.embedding)
    if emb is not None:
        quantize_(model, emb, filter_fn=lambda m, fqn: isinstance(m, torch.nn.Embedding))
    return model


def describe(scheme: QuantScheme) -> dict:
    """What was applied to each layer family, as torchao's own config_to_dict records it (None: fp32)."""
    from torchao.core.config import config_to_dict

    def record(config):
        return None if config is None else config_to_dict(config)
    return {"linear": record(linear_config(scheme.linear)), "output": record(linear_config(scheme.output_quant)),
            "embedding": record(embedding_config(scheme.embedding))}
