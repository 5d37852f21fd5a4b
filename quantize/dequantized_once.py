"""The quantized eager model with its weights dequantized once, for the references that run it many times.

torchao's quantized tensors dequantize their weight on every call (IntxUnpackedToInt8Tensor's linear is
`F.linear(act_qdq(x), weight.dequantize())`), and so does llamaport's int8 weight-only linear: a 1B
model's quantized reference spent 1,134 s redoing that for each of its ~200 forward passes. Here each
quantized weight is replaced by its dequantized fp32 values and the linear keeps torchao's own
per-token int8 activation quant-dequant (`_apply_int8_act_asym_per_token_quant_dequant`, applied to the
input first): the same operations on the same values, so the same outputs, at the speed of an fp32 model.
A padded linear (torchao_map.PaddedInputLinear) pads after the quant-dequant: zeros quantize to the zero
point exactly (the per-token range always includes 0), so the order changes nothing.
"""

from __future__ import annotations

import torch
from torchao.quantization.quantize_.workflows.intx.intx_unpacked_to_int8_tensor import (
    IntxUnpackedToInt8Tensor,
    IntxUnpackedToInt8TensorActivationQuantization,
    _apply_int8_act_asym_per_token_quant_dequant,
)

from llamaport.quantize.executorch_int8_weight import Int8WeightOnlyLinear


def _quant_dequant_input(module, args):
    return (_apply_int8_act_asym_per_token_quant_dequant(args[0]), *args[1:])


def dequantize_once_(model: torch.nn.Module) -> torch.nn.Module:
    """In place: every torchao-quantized weight as fp32 values (with its activation quant-dequant kept as a
    forward pre-hook), every int8 weight-only linear as an nn.Linear of its dequantized weight."""
    for name, module in list(model.named_modules()):
        if isinstance(module, Int8WeightOnlyLinear):
            parent_name, _, child = name.rpartition(".")
            plain = torch.nn.Linear(module.in_features, module.out_features, bias=False, device="meta")
            plain.weight = torch.nn.Parameter(torch.ops.quantized_decomposed.dequantize_per_channel(
                module.weight_int8, module.scales, module.zero_points, 0, -128, 127, torch.int8), requires_grad=False)
            setattr(model.get_submodule(parent_name) if parent_name else model, child, plain)
            continue
        weight = getattr(module, "weight", None)
        if not isinstance(weight, IntxUnpackedToInt8Tensor):
            continue
        act = weight.activation_quantization
        module.weight = torch.nn.Parameter(weight.dequantize(), requires_grad=False)
        if act == IntxUnpackedToInt8TensorActivationQuantization.INT8_ASYM_PER_TOKEN:
            module.register_forward_pre_hook(_quant_dequant_input)
        elif act is not None:
            raise NotImplementedError(f"{name}: activation quantization {act} has no dequantized-once form")
    return model
