"""int8 weight-only linears in the graph form ExecuTorch's XNNPACK delegate lowers correctly.

torchao's IntxWeightOnlyConfig exports as `torchao.dequantize_affine -> linear`, which ExecuTorch 1.5.1's
XNNPACK delegate miscompiles (a single 128x64 Linear is off by ~2000; ExecuTorch's own `int8` qmode does
not export GQA models at all). The same weights through `quantized_decomposed.dequantize_per_channel
-> linear` lower to XNNPACK's fp32-activation / int8-weight GEMM and match eager to 1e-5. The numbers
are torchao's: its choose_qparams_affine / quantize_affine; only the graph form is ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.ao.quantization.fx._decomposed import quantized_decomposed_lib  # noqa: F401  (registers the ops)
from torchao.core.config import AOBaseConfig
from torchao.quantization.quant_primitives import MappingType, choose_qparams_affine, quantize_affine
from torchao.quantization.transform_module import register_quantize_module_handler

QMIN, QMAX = -128, 127


@dataclass
class ExecuTorchInt8WeightOnlyConfig(AOBaseConfig):
    """Symmetric int8, one scale per output channel; fp32 activations."""


class Int8WeightOnlyLinear(torch.nn.Module):
    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        if linear.bias is not None:
            raise ValueError("Llama linears have no bias")
        w = linear.weight.detach().to(torch.float32)
        block = (1, w.shape[1])
        scale, zero = choose_qparams_affine(w, MappingType.SYMMETRIC, block, torch.int8, QMIN, QMAX,
                                            eps=torch.finfo(torch.float32).eps)
        self.register_buffer("weight_int8", quantize_affine(w, block, scale, zero, torch.int8, QMIN, QMAX))
        self.register_buffer("scales", scale.reshape(-1).to(torch.float32))
        self.register_buffer("zero_points", torch.zeros(w.shape[0], dtype=torch.int64))
        self.in_features, self.out_features = w.shape[1], w.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.ops.quantized_decomposed.dequantize_per_channel(
            self.weight_int8, self.scales, self.zero_points, 0, QMIN, QMAX, torch.int8)
        return F.linear(x, w)


@register_quantize_module_handler(ExecuTorchInt8WeightOnlyConfig)
def _swap(module: torch.nn.Linear, config: ExecuTorchInt8WeightOnlyConfig) -> torch.nn.Module:
    return Int8WeightOnlyLinear(module)
