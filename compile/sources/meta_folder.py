"""A Meta folder: params.json + consolidated.00.pth (+ tokenizer.model), as Meta ships Llama 2/3.x."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from llamaport.compile.checkpoint import LlamaCheckpoint, check_state_dict, llama_config
from llamaport.compile.layout import meta_to_hf
from llamaport.compile.sources.hf_folder import read_json
from llamaport.compile.sources.special_ids import special_ids
from llamaport.compile.tokenizer_files import find_tokenizer
from llamaport.errors import ConfigError

PARAMS_KEYS = {"dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "multiple_of", "ffn_dim_multiplier",
               "norm_eps", "rope_theta", "use_scaled_rope", "max_seq_len", "rope_scale_factor", "max_batch_size"}


def safe_torch_load(path: Path) -> dict:
    """Tensors only: a checkpoint that needs code execution to unpickle is refused, never run."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            # Legacy (pre-zip) serialization cannot be memory-mapped; it is still unpickled safely.
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ConfigError(f"{path}: refused to unpickle: it holds objects other than tensors and plain data "
                          "(weights_only=True); re-save it as a plain state dict or use safetensors") from e
    except (RuntimeError, EOFError, OSError) as e:
        raise ConfigError(f"{path}: not a readable PyTorch checkpoint ({e})") from e


def rope_scaling_from_params(params: dict) -> dict | None:
    """Meta's params.json says only use_scaled_rope. Llama 3.1 (8B and up) scales by 8, Llama 3.2
    1B/3B (dim <= 3072) by 32, as ExecuTorch and transformers' conversion also assume."""
    if not params.get("use_scaled_rope"):
        return None
    factor = params.get("rope_scale_factor", 32 if params["dim"] <= 3072 else 8)
    return {"rope_type": "llama3", "factor": float(factor), "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}


def load_meta_folder(folder: Path) -> LlamaCheckpoint:
    params_path = folder / "params.json"
    params = read_json(params_path)
    unknown = set(params) - PARAMS_KEYS
    if unknown:
        raise ConfigError(f"{params_path}: unknown keys {sorted(unknown)}; is this a Llama params.json?")
    shards = sorted(folder.glob("consolidated.*.pth"))
    if not shards:
        raise ConfigError(f"{folder}: no consolidated.*.pth next to params.json")
    if len(shards) > 1:
        raise ConfigError(f"{folder}: {len(shards)} model-parallel shards; merge them into one "
                          "consolidated.00.pth first (small Llamas ship as one)")
    meta_sd = safe_torch_load(shards[0])
    tok = find_tokenizer(folder, folder)
    bos, eos = special_ids(tok)
    vocab = params.get("vocab_size", -1)
    if vocab <= 0:  # Llama 2's params.json says -1: the tokenizer decides
        vocab = meta_sd["tok_embeddings.weight"].shape[0]
    try:
        cfg = llama_config(
            vocab_size=vocab, hidden_size=params["dim"], intermediate_size=meta_sd["layers.0.feed_forward.w1.weight"].shape[0],
            num_hidden_layers=params["n_layers"], num_attention_heads=params["n_heads"],
            num_key_value_heads=params.get("n_kv_heads"), rms_norm_eps=params.get("norm_eps", 1e-5),
            rope_theta=params.get("rope_theta", 10000.0), rope_scaling=rope_scaling_from_params(params),
            max_position_embeddings=params.get("max_seq_len", 2048),
            tie_word_embeddings="output.weight" not in meta_sd, bos_token_id=bos, eos_token_id=eos,
        )
    except KeyError as e:
        raise ConfigError(f"{params_path}: missing field or weight {e.args[0]}") from e
    sd = check_state_dict(cfg, meta_to_hf(meta_sd, cfg), str(shards[0]))
    return LlamaCheckpoint(cfg, sd, tok, "meta", [params_path, shards[0]])
