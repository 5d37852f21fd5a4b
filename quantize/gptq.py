"""GPTQ (Frantar et al., 2022, Algorithm 1) on the CPU, returning the integer grid itself: codes and one
scale per group, which the exporters write into the artifact as they are (torchao's IntxUnpackedToInt8Tensor
for ExecuTorch, MatMulNBits' packed codes for ONNX), so the bundle holds exactly the weights GPTQ chose.

Why our own loop: torchao 0.18's `torchao.prototype.gptq.gptq_quantize` asserts a CUDA device and packs
int4 for mslk's CUDA kernels; onnxruntime 1.32's `neural_compressor.gptq` returns only fake-quantized
weights, whose scales its caller then recomputes by round-to-nearest, so its codes are not GPTQ's grid.
The loop below follows torchao's (lazy batch updates, damped Cholesky inverse, per-group scales frozen at
the group's first column). It can go when torchao's GPTQ runs on the CPU for IntxUnpackedToInt8Tensor.

Scale rules, so that the grid is the one each runtime's own rounding would have used:
- "hqq": torchao's HQQ scale-only search (what ExecuTorch's 8da4w uses), symmetric, codes in [-2^(b-1), 2^(b-1)-1];
- "mlas": onnxruntime's symmetric blockwise rule (MlasQuantizeBlockwise): the signed value of largest
  magnitude maps to -2^(b-1), so the scale may be negative; stored codes are offset by 2^(b-1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SCALE_RULES = ("hqq", "mlas")


@dataclass(frozen=True)
class Grid:
    codes: torch.Tensor  # int8 [N, K_padded], signed (value = code * scale)
    scales: torch.Tensor  # fp32 [N, K_padded // group]
    group: int
    bits: int = 4

    def dequantize(self) -> torch.Tensor:
        return (self.codes.float().view(self.codes.shape[0], -1, self.group) * self.scales.unsqueeze(-1)).flatten(1)


def padded_width(k: int, group: int) -> int:
    return -(-k // group) * group


def _bounds(bits: int) -> tuple[int, int]:
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def choose_scales(w: torch.Tensor, bits: int, rule: str) -> torch.Tensor:
    """One scale per row of `w` [N, group] (a single group), by the runtime's own rule."""
    qmin, qmax = _bounds(bits)
    if rule == "hqq":
        from torchao.quantization.quant_primitives import _choose_qparams_and_quantize_scale_only_hqq

        _, scale = _choose_qparams_and_quantize_scale_only_hqq(w.float(), [1, w.shape[1]], qmin, qmax)
        return scale.reshape(-1).float()
    if rule == "mlas":
        idx = w.abs().argmax(dim=1, keepdim=True)
        extreme = w.gather(1, idx).reshape(-1)
        scale = extreme / qmin
        return torch.where(scale == 0, torch.ones_like(scale), scale)
    raise ValueError(f"unknown scale rule {rule!r}; one of {SCALE_RULES}")


def rtn(weight: torch.Tensor, bits: int, group: int, rule: str) -> Grid:
    """Round-to-nearest on the same grid (the baseline GPTQ is measured against)."""
    w = _pad(weight.float(), group)
    n, k = w.shape
    groups = w.view(n, k // group, group)
    scales = torch.stack([choose_scales(groups[:, g], bits, rule) for g in range(k // group)], dim=1)
    codes = torch.clamp(torch.round(groups / scales.unsqueeze(-1)), *_bounds(bits))
    return Grid(codes.flatten(1).to(torch.int8), scales, group, bits)


def _pad(w: torch.Tensor, group: int) -> torch.Tensor:
    k = w.shape[1]
    kp = padded_width(k, group)
    return w if kp == k else torch.nn.functional.pad(w, (0, kp - k))


def gptq(weight: torch.Tensor, hessian: torch.Tensor, bits: int, group: int, rule: str,
         percdamp: float = 0.01, block: int = 128) -> Grid:
    """GPTQ of `weight` [N, K] given the Hessian proxy `hessian` [K, K] (sum of x xᵀ over calibration
    inputs). Inputs beyond K (padding to a whole group) are zero columns with no activations."""
    qmin, qmax = _bounds(bits)
    w = _pad(weight.detach().float().clone(), group)
    n, k = w.shape
    h = torch.zeros(k, k, dtype=torch.float64)
    h[: hessian.shape[0], : hessian.shape[1]] = hessian.double()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += torch.eye(k, dtype=torch.float64) * percdamp * torch.mean(torch.diag(h))
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True).float()

    block = max(block // group, 1) * group  # whole groups per block: a group's scale is set at its first column
    codes = torch.zeros(n, k, dtype=torch.float32)
    scales = torch.zeros(n, k // group, dtype=torch.float32)
    for b0 in range(0, k, block):
        b1 = min(b0 + block, k)
        w1 = w[:, b0:b1].clone()
        err = torch.zeros_like(w1)
        hinv1 = hinv[b0:b1, b0:b1]
        for i in range(b1 - b0):
            col = b0 + i
            if col % group == 0:
                scale = choose_scales(w1[:, i: i + group], bits, rule)
                scales[:, col // group] = scale
            q = torch.clamp(torch.round(w1[:, i] / scale), qmin, qmax)
            codes[:, col] = q
            e = (w1[:, i] - q * scale) / hinv1[i, i]
            w1[:, i:] -= e.unsqueeze(1) * hinv1[i, i:].unsqueeze(0)
            err[:, i] = e
        w[:, b1:] -= err @ hinv[b0:b1, b1:]
    return Grid(codes.to(torch.int8), scales, group, bits)


class HessianRecorder:
    """Sums x xᵀ of each watched Linear's inputs over forward passes (forward pre-hooks)."""

    def __init__(self, modules: dict[str, torch.nn.Linear]):
        self.sums = {name: torch.zeros(m.in_features, m.in_features, dtype=torch.float64) for name, m in modules.items()}
        self._hooks = [m.register_forward_pre_hook(self._hook(name)) for name, m in modules.items()]

    def _hook(self, name):
        def record(module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            self.sums[name] += x.T @ x
        return record

    def close(self) -> dict[str, torch.Tensor]:
        for h in self._hooks:
            h.remove()
        return self.sums
