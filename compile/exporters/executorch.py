"""ExecuTorch export through its own LLM export (LlmConfig / export_llama): static KV cache, custom SDPA
and cache-update ops, XNNPACK delegation, runner metadata. We only convert the checkpoint into what it
reads and quantize with torchao beforehand (quantize.torchao_map), which export_llama takes as-is.

Layout: weights go in Meta names and Meta (interleaved) RoPE layout, because ExecuTorch implements
Llama 3.1 rope scaling only on that path (its HF-RoPE path ignores rope_scaling)."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

import torch

from compile.checkpoint import LlamaCheckpoint
from compile.layout import hf_to_meta
from quantize.schemes import QuantScheme


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


def quantized_checkpoint(meta_sd: dict, params: dict, scheme: QuantScheme, max_seq_len: int) -> dict:
    """Apply the scheme to ExecuTorch's own Llama module and return its (torchao-quantized) state dict."""
    from executorch.examples.models.llama.llama_transformer import construct_transformer
    from executorch.examples.models.llama.model_args import ModelArgs

    from quantize.torchao_map import apply_scheme

    args = ModelArgs(**params, max_seq_len=max_seq_len, max_context_len=max_seq_len)
    if params["use_scaled_rope"]:  # ModelArgs keeps rope_scale_factor as given
        args.rope_scale_factor = params["rope_scale_factor"]
    with torch.device("meta"):
        module = construct_transformer(args)
    module.load_state_dict(meta_sd, strict=False, assign=True)
    with torch.no_grad():
        apply_scheme(module, scheme)
    return {k: v for k, v in module.state_dict().items() if not k.endswith(("freqs_cos", "freqs_sin"))}


def llm_config(inputs: Path, work: Path, bos: int, eos: list[int], max_seq_len: int):
    from executorch.extension.llm.export.config.llm_config import LlmConfig, ModelType

    c = LlmConfig()
    # llama3 model class: no model-name rope hacks; params.json carries every rope setting.
    c.base.model_class = ModelType.llama3
    c.base.checkpoint, c.base.params = str(inputs / "checkpoint.pth"), str(inputs / "params.json")
    c.base.metadata = json.dumps({"get_bos_id": bos, "get_eos_ids": eos})
    c.model.use_kv_cache = c.model.use_sdpa_with_kv_cache = c.model.enable_dynamic_shape = True
    c.export.max_seq_length = c.export.max_context_length = max_seq_len
    # A name ending in .pte is used as given (relative to the cwd), so it must be absolute.
    c.export.output_dir, c.export.output_name = str(work), str((work / "model.pte").resolve())
    c.backend.xnnpack.enabled = c.backend.xnnpack.extended_ops = True
    return c


# ExecuTorch's Llama2Model re-quantizes a checkpoint whose *path* contains these words
# ("int8" in str(checkpoint_path) -> WeightOnlyInt8QuantHandler): our checkpoint must never be there.
_PATH_WORDS_EXECUTORCH_ACTS_ON = ("int8", "8da4w")


def _checkpoint_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="llamaport-export-"))
    if any(word in str(folder) for word in _PATH_WORDS_EXECUTORCH_ACTS_ON):
        shutil.rmtree(folder)
        raise RuntimeError(f"temporary folder {folder} contains one of {_PATH_WORDS_EXECUTORCH_ACTS_ON}, which "
                           "ExecuTorch's loader acts on; set TMPDIR to another folder")
    return folder


def export_executorch(ckpt: LlamaCheckpoint, scheme: QuantScheme, max_seq_len: int, work: Path) -> Path:
    from executorch.examples.models.llama.export_llama_lib import export_llama

    params = meta_params(ckpt.config)
    meta_sd = hf_to_meta(ckpt.state_dict, ckpt.config)
    if scheme.id != "fp32":
        meta_sd = quantized_checkpoint(meta_sd, params, scheme, max_seq_len)
    inputs = _checkpoint_folder()
    try:
        torch.save(meta_sd, inputs / "checkpoint.pth")
        (inputs / "params.json").write_text(json.dumps(params))
        logging.getLogger().setLevel(logging.WARNING)
        return Path(export_llama(llm_config(inputs, work, ckpt.bos_id, ckpt.eos_ids, max_seq_len)))
    finally:
        shutil.rmtree(inputs, ignore_errors=True)
