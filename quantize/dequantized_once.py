"""The quantized eager model with its weights dequantized once, for the references that run it many times.

torchao's quantized tensors dequantize their weight on every call (IntxUnpackedToInt8Tensor's linear is
`F.linear(act_qdq(x), weight.dequantize())`), and so does llamaport's int8 weight-only linear: a 1B
model's quantized reference spent 1,134 s redoing that for each of its ~200 forward passes. Here each
quantized weight is replaced by its dequantized fp32 values and the linear keeps torchao's own
per-token int8 activation quant-dequant (`_apply_int8_act_asym_per_token_quant_dequant`, applied to the
input first): the same operations on the same values, so the same outputs, at the speed of an fp32 model.
A padded linear (torchao_map.PaddedInputLinear) pads after the quant-dequant: zeros quantize to the zero
point exactly (the per-token range always includes 0), so the order changes nothing.
A quantized embedding stays quantized: a lookup dequantizes only the rows it reads (the same elementwise
dequantize_affine, so the same values), because torchao's embedding dequantizes the whole table on every
call and a dequantized-once table would be the largest tensor of a large-vocabulary model (128k x 2048 in
fp32: 1 GB, the quantized reference's peak for a 1B model).
"""

from __future__ import annotations

import torch
from torchao.quantization.quant_primitives import _DTYPE_TO_QVALUE_BOUNDS, dequantize_affine
from torchao.quantization.quantize_.workflows.intx.intx_unpacked_to_int8_tensor import (
    IntxUnpackedToInt8Tensor,
    IntxUnpackedToInt8TensorActivationQuantization,
    _apply_int8_act_asym_per_token_quant_dequant,
)

from llamaport.quantize.executorch_int8_weight import Int8WeightOnlyLinear


class RowDequantizedEmbedding(torch.nn.Module):
    """An embedding over torchao's int8-stored table that dequantizes the rows a lookup reads."""

    def __init__(self, weight: IntxUnpackedToInt8Tensor):
        super().__init__()
        if weight.block_size[0] != 1:
            raise NotImplementedError(f"embedding quantized in blocks of {weight.block_size}: not one row each")
        self.table = weight

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        table, flat = self.table, indices.reshape(-1)
        qmin, qmax = _DTYPE_TO_QVALUE_BOUNDS[table.target_dtype]
        rows = dequantize_affine(table.qdata[flat], table.block_size, table.scale[flat], table.zero_point[flat],
                                 torch.int8, qmin, qmax, output_dtype=table.dtype)
        return rows.reshape(*indices.shape, rows.shape[-1])


def _quant_dequant_input(module, args):
    return (_apply_int8_act_asym_per_token_quant_dequant(args[0]), *args[1:])


def dequantize_once_(model: torch.nn.Module) -> torch.nn.Module:
    """In place: every torchao-quantized linear weight as fp32 values (with its activation quant-dequant kept as
    a forward pre-hook), every int8 weight-only linear as an nn.Linear of its dequantized weight, every
    quantized embedding as a RowDequantizedEmbedding."""
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
        if isinstance(module, torch.nn.Embedding):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, RowDequantizedEmbedding(weight))
            continue
        act = weight.activation_quantization
        module.weight = torch.nn.Parameter(weight.dequantize(), requires_grad=False)
        if act == IntxUnpackedToInt8TensorActivationQuantization.INT8_ASYM_PER_TOKEN:
            module.register_forward_pre_hook(_quant_dequant_input)
        elif act is not None:
            raise NotImplementedError(f"{name}: activation quantization {act} has no dequantized-once form")
    return model
