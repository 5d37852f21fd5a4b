"""ExecuTorch export through its own LLM export: LlmConfig, its Llama model and loader, its SDPA and
KV-cache source transforms, its XNNPACK lowering and runner metadata: the steps of export_llama
(`_export_llama`), called one by one so that our quantization (quantize.torchao_map, torchao's
`quantize_` with per-layer filters) runs as a source transform in between. export_llama itself has no
such hook, and its own 8w lowering is broken in 1.5.1 (see quantize.executorch_int8_weight).

Layout: weights go in Meta names and Meta (interleaved) RoPE layout, because ExecuTorch implements
Llama 3.1 rope scaling only on that path (its HF-RoPE path ignores rope_scaling)."""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import tempfile
from pathlib import Path

import torch

from llamaport.compile.checkpoint import LlamaCheckpoint
from llamaport.compile.exporters.exported import Exported
from llamaport.compile.layout import hf_to_meta
from llamaport.errors import ConfigError
from llamaport.runtime_tests.manifest import Delegation, Lowering
from llamaport.quantize.schemes import QuantScheme


def meta_params(cfg: dict) -> dict:
    """params.json for ExecuTorch's ModelArgs, derived from the normalized config."""
    params = {
        "dim": cfg["hidden_size"], "n_layers": cfg["num_hidden_layers"], "n_heads": cfg["num_attention_heads"],
        "n_kv_heads": cfg["num_key_value_heads"], "vocab_size": cfg["vocab_size"],
        "hidden_dim": cfg["intermediate_size"], "head_dim": cfg["head_dim"], "norm_eps": cfg["rms_norm_eps"],
        "rope_theta": cfg["rope_theta"], "use_scaled_rope": False,
    }
    rs = cfg.get("rope_scaling")
    if rs:
        params.update(use_scaled_rope=True, rope_scale_factor=int(rs["factor"]),
                      high_freq_factor=int(rs.get("high_freq_factor", 4)))
    return params


def llm_config(inputs: Path, work: Path, bos: int, eos: list[int], max_seq_len: int):
    from executorch.extension.llm.export.config.llm_config import LlmConfig, ModelType

    c = LlmConfig()
    # llama3 model class: no model-name rope hacks; params.json carries every rope setting.
    c.base.model_class = ModelType.llama3
    c.base.checkpoint, c.base.params = str(inputs / "checkpoint.pth"), str(inputs / "params.json")
    c.base.metadata = json.dumps({"get_bos_id": bos, "get_eos_ids": eos})
    c.model.use_kv_cache = c.model.use_sdpa_with_kv_cache = c.model.enable_dynamic_shape = True
    c.export.max_seq_length = c.export.max_context_length = max_seq_len
    c.export.output_dir = str(work)
    c.backend.xnnpack.enabled = c.backend.xnnpack.extended_ops = True
    return c


# ExecuTorch's Llama2Model re-quantizes a checkpoint whose *path* contains these words
# ("int8" in str(checkpoint_path) -> WeightOnlyInt8QuantHandler): our checkpoint must never be there.
_PATH_WORDS_EXECUTORCH_ACTS_ON = ("int8", "8da4w")


def _checkpoint_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="llamaport-export-"))
    if any(word in str(folder) for word in _PATH_WORDS_EXECUTORCH_ACTS_ON):
        shutil.rmtree(folder)
        raise ConfigError(f"temporary folder {folder} contains one of {_PATH_WORDS_EXECUTORCH_ACTS_ON}, which "
                          "ExecuTorch's loader acts on; set TMPDIR to another folder")
    return folder


@contextlib.contextmanager
def other_backend_config(ckpt: LlamaCheckpoint, work: Path, max_seq_len: int):
    """export_llama's LlmConfig for our checkpoint with XNNPACK switched off (the CoreML, Vulkan and QNN
    exporters switch their own backend on); the checkpoint folder it reads is removed afterwards."""
    inputs = _checkpoint_folder()
    try:
        torch.save(hf_to_meta(ckpt.state_dict, ckpt.config), inputs / "checkpoint.pth")
        (inputs / "params.json").write_text(json.dumps(meta_params(ckpt.config)))
        config = llm_config(inputs, work, ckpt.bos_id, ckpt.eos_ids, max_seq_len)
        config.backend.xnnpack.enabled = config.backend.xnnpack.extended_ops = False
        yield config
    finally:
        shutil.rmtree(inputs, ignore_errors=True)


def write_weightless_checkpoint(ckpt: LlamaCheckpoint, path: Path) -> None:
    """The checkpoint export_llama's loader reads, as meta tensors: every name, shape and dtype (fp32) and no
    data, so ExecuTorch builds its Llama without a copy of the weights (and skips its random init); the
    weights are assigned by `assign_weights_`, the first source transform. Writing them out in full made
    the export hold two fp32 copies (ours and the file's, memory-mapped): 5 GB each for a 1B model."""
    from llamaport.compile.checkpoint import expected_shapes

    shapes = {n: torch.empty(s, dtype=torch.float32, device="meta") for n, s in expected_shapes(ckpt.config).items()}
    torch.save(hf_to_meta(shapes, ckpt.config), path)


def assign_weights_(model: torch.nn.Module, ckpt: LlamaCheckpoint) -> torch.nn.Module:
    """Our weights (Meta names and layout) into ExecuTorch's Llama by assignment, no copy; every weight it
    built from the weightless checkpoint must get one."""
    weights = hf_to_meta(ckpt.state_dict, ckpt.config)
    model.load_state_dict(weights, strict=False, assign=True)
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise ValueError(f"ExecuTorch's Llama has weights llamaport did not assign: {left[:3]}")
    return model


def quantized_eager(ckpt: LlamaCheckpoint, scheme: QuantScheme, max_seq_len: int,
                    full_logits: bool = False, plan=None, kv_cache: bool = False) -> torch.nn.Module:
    """ExecuTorch's Llama with the scheme applied: the quantized eager model. It returns the last position's
    logits, or every position's with `full_logits`; with `kv_cache` it takes {"input_pos": tensor([start])}."""
    from llamaport.quantize.torchao_map import apply_scheme_

    module = eager_llama(ckpt, max_seq_len, full_logits, kv_cache=kv_cache)
    if scheme.kv_cache == 8:
        if not kv_cache:
            raise ValueError(f"scheme {scheme.id} quantizes the KV cache: its eager model needs kv_cache=True")
        module = int8_kv_cache(module)
    with torch.no_grad():
        return apply_scheme_(module, scheme, plan).eval()


def int8_kv_cache(module: torch.nn.Module) -> torch.nn.Module:
    """ExecuTorch's int8 KV cache on its eager Llama, by the source transforms export_llama's
    --quantize_kv_cache applies, in its order: the custom SDPA and KV-cache ops, then the cache quantized
    per token (QuantizedKVCache) and read by the quantized SDPA op. The same modules the .pte is exported
    from, run in eager through the ops' CPU kernels."""
    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401  (registers the llama:: ops' eager kernels)
    from executorch.examples.models.llama.source_transformation.custom_kv_cache import (
        replace_kv_cache_with_custom_kv_cache, replace_kv_cache_with_quantized_kv_cache)
    from executorch.examples.models.llama.source_transformation.sdpa import (
        replace_sdpa_with_custom_op, replace_sdpa_with_quantized_sdpa)

    for transform in (replace_sdpa_with_custom_op, replace_kv_cache_with_custom_kv_cache,
                      replace_kv_cache_with_quantized_kv_cache, replace_sdpa_with_quantized_sdpa):
        module = transform(module)
    return module


def eager_llama(ckpt: LlamaCheckpoint, max_seq_len: int, full_logits: bool, hf_rope: bool = False,
                kv_cache: bool = False) -> torch.nn.Module:
    """ExecuTorch's Llama in fp32 with our weights assigned (no copy), with or without its eager KV cache:
    Meta's interleaved q/k layout, or with `hf_rope` ExecuTorch's rotate-half RoPE and the q/k rows left as
    Hugging Face has them. Parameters are made on the meta device (no random init of weights about to be
    replaced); buffers (RoPE tables, the cache, masks) are real."""
    from accelerate import init_empty_weights
    from executorch.examples.models.llama.llama_transformer import construct_transformer
    from executorch.examples.models.llama.model_args import ModelArgs

    args = ModelArgs(**meta_params(ckpt.config), max_seq_len=max_seq_len, max_context_len=max_seq_len,
                     generate_full_logits=full_logits, use_hf_rope=hf_rope, use_kv_cache=kv_cache,
                     enable_dynamic_shape=kv_cache)
    with init_empty_weights(include_buffers=False):
        module = construct_transformer(args)
    module.load_state_dict(hf_to_meta(ckpt.state_dict, ckpt.config, permute_rope=not hf_rope), strict=False, assign=True)
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"ExecuTorch's Llama left tensors unset: {left[:3]}")
    return module.eval()


def xnnpack_partitioners(scheme: QuantScheme) -> list:
    """export_llama's own pair (dynamically quantized linears first, then everything else), except for
    int8 weight-only linears: XNNPACK has no fp32-activation/int8-weight GEMM, and with the dynamic
    partitioner first their linear is decomposed into a lone transpose and a portable matmul. An
    fp32-only partitioner instead keeps the linear whole and delegated, with the weight dequantized by
    ExecuTorch's quantized kernel on the way in."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackFloatingPointPartitioner
    from executorch.extension.llm.export.partitioner_lib import get_xnnpack_partitioner

    if "8w" in scheme.linear_kinds():
        return [XnnpackFloatingPointPartitioner()]
    return [get_xnnpack_partitioner(dynamic_quant_only_partitioner=True),
            get_xnnpack_partitioner(dynamic_quant_only_partitioner=False)]


# The target's lowering order, backend by backend; the fallback (portable kernels) needs no partitioner.
PARTITIONERS = {"xnnpack": xnnpack_partitioners, "portable": lambda scheme: []}


def delegation_summary(graph_module, backends: tuple[str, ...]) -> Delegation:
    """ExecuTorch's own delegation breakdown of the lowered program (what print_delegation_info shows)."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    ops = info.delegation_by_operator.values()
    return Delegation(backends=backends, delegated_subgraphs=info.num_delegated_subgraphs,
                      delegated_nodes=info.num_delegated_nodes, non_delegated_nodes=info.num_non_delegated_nodes,
                      delegated_ops={b.op_type: b.delegated for b in ops if b.delegated},
                      non_delegated_ops={b.op_type: b.non_delegated for b in ops if b.non_delegated})


def export(ckpt: LlamaCheckpoint, scheme: QuantScheme, max_seq_len: int, backends: tuple[str, ...],
           work: Path, inputs=None) -> Exported:
    """export_llama's pipeline on our weights; with an eval set in `inputs`, also the quantized reference,
    from the very model just exported (no second load and quantization of the checkpoint)."""
    import executorch.kernels.quantized  # noqa: F401  (out-variants of the quantized_decomposed ops 8w leaves in the graph)
    from executorch.examples.models.llama import export_llama_lib as et

    from llamaport.quantize.torchao_map import apply_scheme_, describe

    plan = inputs.plan if inputs is not None else None
    params = meta_params(ckpt.config)
    folder = _checkpoint_folder()
    try:
        write_weightless_checkpoint(ckpt, folder / "checkpoint.pth")
        (folder / "params.json").write_text(json.dumps(params))
        config = llm_config(folder, work, ckpt.bos_id, ckpt.eos_ids, max_seq_len)
        config.model.quantize_kv_cache = scheme.kv_cache == 8  # export_llama's --quantize_kv_cache
        et._validate_args(config)
        manager = et._prepare_for_llama_export(config)  # ExecuTorch's model + its SDPA / KV-cache transforms
        with torch.no_grad():
            manager = manager.source_transform([lambda model: assign_weights_(model, ckpt),
                                                lambda model: apply_scheme_(model, scheme, plan)])
        manager.export()
        manager.run_canonical_optimizations()
        partitioners = [p for backend in backends for p in PARTITIONERS[backend](scheme)]
        manager.to_edge_transform_and_lower(partitioners)
        delegation = delegation_summary(manager.edge_manager.exported_program().graph_module, backends)
        manager.to_executorch(passes=[])
        pte = work / "model.pte"
        manager.save_to_pte(str(pte.resolve()))
        lowering = Lowering(quantization=describe(scheme), delegation=delegation)
        model = manager.model
        _drop_dynamo_compiled_graphs()
        del manager  # the lowering's programs go; the quantized eager model stays for the reference
        return Exported(files=(pte,), lowering=lowering, quantized_reference=functools.partial(
            _quantized_outputs_of_exported, model))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _drop_dynamo_compiled_graphs() -> None:
    """torch 2.13's export installs each traced graph as a global `__compiled_fn_*` of
    torch._dynamo.functional_export, with the model's (quantized) weights as its parameters: at 1B, 1.24 GB of
    int8 weights alive after the model went. Found by a referrer walk; can go when torch's export stops
    leaving them there (re-check: no OptimizedModule globals in that module after an export)."""
    import torch._dynamo.functional_export as functional_export

    for name in [n for n in vars(functional_export) if n.startswith("__compiled_fn_")]:
        delattr(functional_export, name)


def _quantized_outputs_of_exported(model: torch.nn.Module, eval_set) -> tuple:
    """The quantized reference from the eager model export_llama's pipeline just exported: the same torchao
    weights, its own custom SDPA and KV-cache modules (int8 ones for -kv8), its weights dequantized once,
    every position's logits on, KV-cached greedy runs. The separate reference
    (golden_build.quantized_eager_outputs) would read and quantize the checkpoint again: for a 1B model a
    second 5 GB of fp32 weights and minutes of quantization."""
    from llamaport.compile.golden_build import eager_outputs
    from llamaport.quantize.dequantized_once import dequantize_once_

    model.generate_full_logits = True  # read by the Transformer's forward: logits of every position
    with torch.no_grad():
        return eager_outputs(dequantize_once_(model), eval_set)
