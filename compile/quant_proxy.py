"""Cheap accuracy proxies for the tuner: a recipe's quantized weights in eager PyTorch, scored on the eval
text against the full model, without any export. For ExecuTorch recipes the proxy is the build's own
quantized reference (torchao on ExecuTorch's Llama, int8 dynamic activations included); for onnxruntime
the full transformers model with each linear's weight replaced by the grid onnxruntime would store (its
symmetric blockwise rule, or the plan's GPTQ / 8-bit grid), which leaves out MatMulNBits' int8
activations (the lowering gap, measured later by the build for the bundles that survive)."""

from __future__ import annotations

import torch

from llamaport.compile.checkpoint import LlamaCheckpoint
from llamaport.compile.quant_plan import unit_quant
from llamaport.quantize.gptq import rtn
from llamaport.quantize.plan import QuantPlan, genai_node, hf_linears
from llamaport.quantize.schemes import EIGHT_BIT_OF, QuantScheme


@torch.inference_mode()
def proxy_logits(ckpt: LlamaCheckpoint, scheme: QuantScheme, plan: QuantPlan, runtime: str, windows, context_len: int):
    if runtime == "executorch":
        from llamaport.compile.exporters.executorch import quantized_eager

        from llamaport.quantize.dequantized_once import dequantize_once_

        model = dequantize_once_(quantized_eager(ckpt, scheme, context_len, full_logits=True,
                                                 plan=plan if scheme.calibrated else None))
        return torch.cat([model(torch.tensor([w]))[0].float() for w in windows])
    model = _onnx_grid_model(ckpt, scheme, plan)
    return torch.cat([model(torch.tensor([w])).logits[0].float() for w in windows])


def _onnx_grid_model(ckpt: LlamaCheckpoint, scheme: QuantScheme, plan: QuantPlan):
    from llamaport.compile.reference import full_model

    model = full_model(ckpt)
    modules = dict(model.named_modules())
    for unit in plan.units:
        q = unit.quant
        names = hf_linears(unit.unit)
        if q.kind == "fp32":
            continue
        if genai_node(unit.unit) in plan.grids:
            grid = plan.grids[genai_node(unit.unit)]
            weights = grid.dequantize().split([modules[n].out_features for n in names])
        else:
            base = unit_quant(scheme, unit.unit)
            bits = 4 if q.kind in EIGHT_BIT_OF else 8
            weights = [rtn(modules[n].weight.detach(), bits, base.group_size or modules[n].in_features, "mlas").dequantize()
                        for n in names]
        for n, w in zip(names, weights):
            modules[n].weight = torch.nn.Parameter(w[:, : modules[n].in_features].contiguous(), requires_grad=False)
    if scheme.embedding.bits != 32:
        emb = model.model.embed_tokens
        table = rtn(emb.weight.detach(), scheme.embedding.bits, scheme.embedding.group_size or emb.weight.shape[1], "mlas")
        emb.weight = torch.nn.Parameter(table.dequantize()[:, : emb.weight.shape[1]].contiguous(), requires_grad=False)
    return model


def weight_bytes(cfg: dict, scheme: QuantScheme, plan: QuantPlan) -> int:
    """Bytes of the weights as stored: codes at their bits plus one fp32 scale per group, unit by unit."""
    h, vocab = cfg["hidden_size"], cfg["vocab_size"]
    heads, kv, hd, inter = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["intermediate_size"]
    shapes = {"attn.qkv": ((heads + 2 * kv) * hd, h), "attn.o": (h, heads * hd), "mlp.gate": (inter, h),
              "mlp.up": (inter, h), "mlp.down": (h, inter)}
    total = 0
    for unit in plan.units:
        n, k = (vocab, h) if unit.unit == "output" else shapes[unit.unit.split(".", 2)[2]]
        total += _matrix_bytes(n, k, unit.quant.kind, unit.quant.group_size)
    emb = scheme.embedding
    total += _matrix_bytes(vocab, h, {32: "fp32", 8: "8w", 4: "4w"}[emb.bits], emb.group_size)
    return total + (2 * cfg["num_hidden_layers"] + 1) * h * 4


def _matrix_bytes(n: int, k: int, kind: str, group: int | None) -> int:
    if kind == "fp32":
        return n * k * 4
    bits = 4 if kind.endswith("4w") else 8
    groups = -(-k // group) if group else 1
    return n * (-(-k // group) * group if group else k) * bits // 8 + n * groups * 4
