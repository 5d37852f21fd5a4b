"""A Meta folder: params.json + consolidated.00.pth (+ tokenizer.model), as Meta ships Llama 2/3.x."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from llamaport.compile.checkpoint import LlamaCheckpoint, check_state_dict, llama_config
from llamaport.compile.layout import meta_to_hf, meta_to_hf_names, to_hf_rope
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


def rope_scaling_from_params(params: dict, path: Path | None = None) -> dict | None:
    """Meta's params.json says only use_scaled_rope. Llama 3.1 (8B and up) scales by 8, Llama 3.2
    1B/3B (dim <= 3072) by 32, as ExecuTorch and transformers' conversion also assume."""
    if not params.get("use_scaled_rope"):
        return None
    dim = params.get("dim")
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise ConfigError(f"{path}: dim must be a positive integer, got {dim!r}")
    factor = params.get("rope_scale_factor", 32 if dim <= 3072 else 8)
    return {"rope_type": "llama3", "factor": float(factor), "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}


# Our (Hugging Face) field names -> params.json's, for messages.
PARAMS_NAMES = {"vocab_size": "vocab_size", "hidden_size": "dim", "num_hidden_layers": "n_layers",
                "num_attention_heads": "n_heads", "num_key_value_heads": "n_kv_heads", "rms_norm_eps": "norm_eps",
                "max_position_embeddings": "max_seq_len", "intermediate_size": "the FFN width (layers.0.feed_forward.w1)"}


def state_dict_of(obj, path: Path, what: str = "") -> dict:
    """A checkpoint's dict of name -> tensor, or one line saying what the file holds instead."""
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        kind = type(obj).__name__ if not isinstance(obj, dict) else "dict of other things"
        raise ConfigError(f"{path}: {what}holds a {kind}, not a state dict of tensors")
    return obj


def _rows(sd: dict, name: str, path: Path) -> int:
    if name not in sd:
        raise ConfigError(f"{path}: missing field or weight {name}")
    return int(sd[name].shape[0])


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
    meta_sd = state_dict_of(safe_torch_load(shards[0]), shards[0])
    tok = find_tokenizer(folder, folder)
    bos, eos = special_ids(tok)
    vocab = params.get("vocab_size", -1)
    if isinstance(vocab, int) and vocab <= 0:  # Llama 2's params.json says -1: the tokenizer decides
        vocab = _rows(meta_sd, "tok_embeddings.weight", shards[0])
    cfg = llama_config(
        params_path, PARAMS_NAMES,
        vocab_size=vocab, hidden_size=params.get("dim"),
        intermediate_size=_rows(meta_sd, "layers.0.feed_forward.w1.weight", shards[0]),
        num_hidden_layers=params.get("n_layers"), num_attention_heads=params.get("n_heads"),
        num_key_value_heads=params.get("n_kv_heads"), rms_norm_eps=params.get("norm_eps", 1e-5),
        rope_theta=params.get("rope_theta", 10000.0), rope_scaling=rope_scaling_from_params(params, params_path),
        max_position_embeddings=params.get("max_seq_len", 2048),
        tie_word_embeddings="output.weight" not in meta_sd, bos_token_id=bos, eos_token_id=eos,
    )
    sd = check_state_dict(cfg, _hf_weights(meta_sd, shards[0], cfg), str(shards[0]))
    return LlamaCheckpoint(cfg, sd, tok, "meta", [params_path, shards[0]])


def _hf_weights(meta_sd: dict, path: Path, cfg: dict):
    """HF names and layout; read lazily from the file when it is a (memory-mappable) zip, as torch.save
    writes since PyTorch 1.6; a legacy file is already in memory and is converted as it is."""
    if not zipfile.is_zipfile(path):
        return meta_to_hf(meta_sd, cfg)
    from llamaport.compile.lazy_weights import torch_file_weights

    meta = torch_file_weights(path, list(meta_sd), safe_torch_load)
    return meta.renamed(meta_to_hf_names(meta_sd, cfg), lambda hf, w: to_hf_rope(hf, w, cfg))
