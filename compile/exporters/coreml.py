"""ExecuTorch's CoreML backend (Apple Neural Engine / GPU / CPU) through ExecuTorch's own LLM export steps:
LlmConfig with backend.coreml (iOS 18, CPU_AND_NE), its Llama model and loader, its CoreML SDPA and KV-cache
source transforms, static shapes (one token per call: export_llama refuses dynamic shapes for CoreML), and
CoreMLPartitioner through to_edge_transform_and_lower, as `_to_edge_and_lower_llama_coreml` does.

Weights are quantized as ExecuTorch's CoreML LLM export (examples/apple/coreml/llama/export.py) and its
CoreML recipes do it: torchao's IntxWeightOnlyConfig on every linear, the output layer included (int4 in
blocks of 32 is its b4w, int8 per output channel its c8w), applied to the fp32 weights and then cast to
fp16: export_llama's order (quantize in the checkpoint's dtype, cast to dtype_override after). CoreML lowers
torchao's dequantize_affine to its own blockwise shift-scale op, so the program holds the very int4/int8
values and scales the eager model has. (LlmConfig's backend.coreml.quantize, coremltools' own compression
inside the delegate, is not used: no eager model reproduces its rounding.)

This host has no CoreML runtime, so the checks here are the quantized eager model: ExecuTorch's Llama in
fp16 with the same weights (`quantized_outputs`)."""

from __future__ import annotations

import gc
from pathlib import Path

import torch

from llamaport.compile.checkpoint import LlamaCheckpoint
from llamaport.compile.exporters.executorch import delegation_summary, other_backend_config
from llamaport.compile.exporters.exported import Exported
from llamaport.errors import ConfigError
from llamaport.quantize.schemes import LinearQuant, QuantScheme
from llamaport.runtime_tests.manifest import Lowering

IOS = 18  # int4 weights and CoreML's fused SDPA need iOS 18 / macOS 15
COMPUTE_UNITS = "cpu_and_ne"  # as ExecuTorch's CoreML LLM export: CPU and Neural Engine


def weight_config(q: LinearQuant):
    """torchao's config for a CoreML linear: None (fp16), int8 per channel (c8w) or int4 in blocks (b4w)."""
    from torchao.quantization import IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerAxis, PerGroup

    if q.kind == "fp32":
        return None
    if q.kind == "8w":
        return IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0))
    if q.kind == "4w":
        return IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(q.group_size))
    raise ConfigError(f"CoreML builds fp16, 8w and 4w linears, not {q.kind}")


def quantize_to_fp16_(model: torch.nn.Module, scheme: QuantScheme) -> torch.nn.Module:
    """Every linear quantized by the scheme (CoreML schemes quantize the output layer like the body) on
    the fp32 weights, then the whole model cast to fp16."""
    from torchao.quantization import quantize_

    config = weight_config(scheme.linear)
    if config is not None:
        quantize_(model.float(), config, filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear))
    return model.to(torch.float16)


def describe(scheme: QuantScheme) -> dict:
    from torchao.core.config import config_to_dict

    config = weight_config(scheme.linear)
    record = None if config is None else config_to_dict(config)
    return {"linear": record, "output": record, "embedding": None, "compute": "fp16"}


def export(ckpt: LlamaCheckpoint, scheme: QuantScheme, max_seq_len: int, backends: tuple[str, ...],
           work: Path, inputs=None) -> Exported:
    from executorch.examples.models.llama import export_llama_lib as et
    from executorch.extension.llm.export.builder import DType
    from executorch.extension.llm.export.config.llm_config import CoreMLComputeUnit
    from executorch.extension.llm.export.partitioner_lib import get_coreml_partitioner

    with other_backend_config(ckpt, work, max_seq_len) as config:
        config.backend.coreml.enabled = True
        config.backend.coreml.ios = IOS
        config.backend.coreml.compute_units = CoreMLComputeUnit(COMPUTE_UNITS)
        # Static shapes and ExecuTorch's CoreML SDPA / KV cache instead of its custom SDPA op (CPU only).
        config.model.enable_dynamic_shape = config.model.use_sdpa_with_kv_cache = False
        et._validate_args(config)
        manager = et._prepare_for_llama_export(config)  # loaded in fp32; the transform below casts to fp16
        with torch.no_grad():
            manager = manager.source_transform([lambda model: quantize_to_fp16_(model, scheme)])
        manager.dtype = DType.fp16
        exported = manager.export()
        exported.run_canonical_optimizations()
        partitioner = get_coreml_partitioner(IOS, None, None, None, COMPUTE_UNITS)
        lowered = exported.to_edge_transform_and_lower([partitioner])
        delegation = delegation_summary(lowered.edge_manager.exported_program().graph_module, backends)
        program = lowered.to_executorch(passes=[])
        pte = work / "model.pte"
        program.save_to_pte(str(pte.resolve()))
        notes = (f"fp16 program, CoreML compute units {COMPUTE_UNITS}, minimum iOS {IOS}; one token per call "
                 "(static shapes, ExecuTorch's CoreML KV cache)",)
        return Exported(files=(pte,), lowering=Lowering(quantization=describe(scheme), delegation=delegation,
                                                        notes=notes))


def quantized_eager_fp16(ckpt: LlamaCheckpoint, scheme: QuantScheme, max_seq_len: int) -> torch.nn.Module:
    """ExecuTorch's Llama (no KV cache, every position's logits) with the CoreML weights, in fp16."""
    from llamaport.compile.exporters.executorch import eager_llama

    module = eager_llama(ckpt, max_seq_len, full_logits=True)
    with torch.no_grad():
        return quantize_to_fp16_(module, scheme).eval()


class Fp16ViaFp32Kernels:
    """PyTorch's CPU fp16 matmul and attention read fp16, accumulate in fp32 and round the result to fp16,
    through kernels about 100x slower than the fp32 ones. Within this context those ops take their fp16
    inputs to fp32 and round the result back: the same numbers (bit-identical logits on the bundled model,
    tests/compile/test_build_gpu_npu_backends.py), at fp32 speed. Can go when PyTorch's CPU fp16 GEMM and SDPA
    run near fp32 speed (torch 2.13: about 100x slower)."""

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_map

        aten = torch.ops.aten
        ops = {aten.mm.default, aten.bmm.default, aten.addmm.default,
               aten._scaled_dot_product_flash_attention_for_cpu.default}

        def up(t):
            return t.float() if isinstance(t, torch.Tensor) and t.dtype == torch.float16 else t

        def down(t):
            return t.half() if isinstance(t, torch.Tensor) and t.dtype == torch.float32 else t

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                if func in ops and any(isinstance(a, torch.Tensor) and a.dtype == torch.float16 for a in args):
                    return tree_map(down, func(*tree_map(up, args), **tree_map(up, kwargs)))
                return func(*args, **kwargs)

        self._mode = Mode()
        return self._mode.__enter__()

    def __exit__(self, *exc):
        return self._mode.__exit__(*exc)


@torch.inference_mode()
def quantized_outputs(ckpt: LlamaCheckpoint, scheme: QuantScheme, eval_set, context_len: int,
                      artifact=None) -> tuple[torch.Tensor, list[list[int]]]:
    """The quantized eager model in the program's precision (fp16 weights and activations, with the fp32
    RMSNorm the graph asks for; CoreML's fp16 compute precision may run that in fp16 too), logits cast to fp32."""
    model = quantized_eager_fp16(ckpt, scheme, context_len)
    with Fp16ViaFp32Kernels():
        logits = torch.cat([model(torch.tensor([w]))[0].float() for w in eval_set.windows()])
        runs = []
        for prompt in eval_set.prompts:  # no KV cache in this model: each step rereads the whole sequence
            seq = list(prompt)
            for _ in range(eval_set.greedy_tokens):
                seq.append(int(model(torch.tensor([seq]))[0, -1].float().argmax()))
            runs.append(seq[len(prompt):])
    del model
    gc.collect()
    return logits, runs
