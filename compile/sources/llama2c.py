"""llama2.c checkpoints: float32 `.bin` (legacy header-only, and version 1 with the "ak42" magic) and
the `.pt` training checkpoint ({"model": state_dict, "model_args": {...}}). Layout as in its export.py."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from llamaport.compile.checkpoint import LlamaCheckpoint, check_state_dict, llama_config
from llamaport.compile.layout import meta_to_hf
from llamaport.compile.sources.meta_folder import PARAMS_NAMES, _rows, safe_torch_load, state_dict_of
from llamaport.compile.sources.special_ids import special_ids
from llamaport.compile.tokenizer_files import find_tokenizer
from llamaport.errors import ConfigError

MAGIC_V1 = 0x616B3432  # "ak42"
# Our field names -> llama2.c's model_args (and header) names, for messages: Meta's, with its FFN width.
MODEL_ARGS_NAMES = {**PARAMS_NAMES, "intermediate_size": "hidden_dim"}
HEADER_V1_BYTES = 256


def _check_dims(path: Path, dim, hidden, n_layers, n_heads, n_kv, vocab, seq) -> None:
    if min(dim, hidden, n_layers, n_heads, n_kv, vocab, seq) <= 0 or dim % n_heads or n_heads % n_kv or dim > 65536:
        raise ConfigError(f"{path}: header (dim={dim}, hidden_dim={hidden}, n_layers={n_layers}, n_heads={n_heads}, "
                          f"n_kv_heads={n_kv}, vocab_size={vocab}, max_seq_len={seq}) is not a llama2.c model")


def _floats(version: int, dim, hidden, L, n_heads, n_kv, vocab, seq, shared) -> int:
    """How many float32 values the header implies, by arithmetic: a header claiming 2**31 layers must be
    refused against the file's length before any per-layer list (or tensor) is made."""
    kv = n_kv * (dim // n_heads)
    per_layer = 2 * dim + dim * dim * 2 + kv * dim * 2 + 3 * hidden * dim
    rope = 2 * seq * (dim // n_heads // 2) if version == 0 else 0
    return vocab * dim + L * per_layer + dim + rope + (0 if shared else vocab * dim)


def _layout(version: int, dim, hidden, L, n_heads, n_kv, vocab, seq, shared):
    """(name, shape) in file order; llama2.c's rope tables appear as 'freq_cis_*' and are skipped."""
    kv = n_kv * (dim // n_heads)
    per_layer = {"attention_norm": (dim,), "ffn_norm": (dim,), "attention.wq": (dim, dim), "attention.wk": (kv, dim),
                 "attention.wv": (kv, dim), "attention.wo": (dim, dim), "feed_forward.w1": (hidden, dim),
                 "feed_forward.w2": (dim, hidden), "feed_forward.w3": (hidden, dim)}

    def layers(name):
        return [(f"layers.{i}.{name}.weight", per_layer[name]) for i in range(L)]
    emb = [("tok_embeddings.weight", (vocab, dim))]
    if version == 1:
        order = layers("attention_norm") + layers("ffn_norm") + [("norm.weight", (dim,))] + emb
        for n in ("attention.wq", "attention.wk", "attention.wv", "attention.wo",
                  "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"):
            order += layers(n)
    else:
        order = emb + layers("attention_norm")
        for n in ("attention.wq", "attention.wk", "attention.wv", "attention.wo", "ffn_norm",
                  "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"):
            order += layers(n)
        half = dim // n_heads // 2
        order += [("norm.weight", (dim,)), ("freq_cis_real", (seq, half)), ("freq_cis_imag", (seq, half))]
    return order + ([] if shared else [("output.weight", (vocab, dim))])


def read_llama2c_bin(path: Path) -> tuple[dict, dict]:
    with open(path, "rb") as f:
        data = f.read(HEADER_V1_BYTES)  # the header alone, until its sizes are checked against the file's
    size = path.stat().st_size
    if len(data) < 28:
        raise ConfigError(f"{path}: {len(data)} bytes is too short for a llama2.c header")
    magic, version = struct.unpack_from("<Ii", data, 0)
    if magic == MAGIC_V1:
        if version != 1:
            raise ConfigError(f"{path}: llama2.c version {version} (quantized) is not supported; export float32 "
                              "(legacy or version 1)")
        dims = struct.unpack_from("<7i", data, 8)
        shared, offset = bool(data[36]), HEADER_V1_BYTES
    else:
        version, dims, offset = 0, struct.unpack_from("<7i", data, 0), 28
        shared = dims[5] > 0
        dims = (*dims[:5], abs(dims[5]), dims[6])
    _check_dims(path, *dims)
    expected = offset + 4 * _floats(version, *dims, shared)
    if size != expected:
        raise ConfigError(f"{path}: {size} bytes, but its header (version {version}) implies {expected}; "
                          "the file is truncated or not a float32 llama2.c checkpoint")
    layout = _layout(version, *dims, shared)
    data = path.read_bytes()
    sd, pos = {}, offset
    for name, shape in layout:
        n = int(np.prod(shape))
        if not name.startswith("freq_cis"):
            sd[name] = torch.from_numpy(np.frombuffer(data, dtype="<f4", count=n, offset=pos).copy()).view(*shape)
        pos += 4 * n
    dim, hidden, L, n_heads, n_kv, vocab, seq = dims
    args = {"dim": dim, "hidden_dim": hidden, "n_layers": L, "n_heads": n_heads, "n_kv_heads": n_kv,
            "vocab_size": vocab, "max_seq_len": seq}
    return sd, args


def read_llama2c_pt(path: Path) -> tuple[dict, dict]:
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or not isinstance(ckpt.get("model_args"), dict):
        raise ConfigError(f"{path}: not a llama2.c training checkpoint (needs 'model' and a 'model_args' dict)")
    sd = {k.removeprefix("_orig_mod."): v for k, v in state_dict_of(ckpt["model"], path, "'model' ").items()}
    args = dict(ckpt["model_args"])
    args["hidden_dim"] = _rows(sd, "layers.0.feed_forward.w1.weight", path)
    return sd, args


def load_llama2c(path: Path) -> LlamaCheckpoint:
    sd, args = read_llama2c_bin(path) if path.suffix == ".bin" else read_llama2c_pt(path)
    tok = find_tokenizer(path.parent, path)
    bos, eos = special_ids(tok)
    _rows(sd, "tok_embeddings.weight", path)  # present, or refused by name
    embedding = sd["tok_embeddings.weight"]
    cfg = llama_config(
        path, MODEL_ARGS_NAMES,
        vocab_size=args.get("vocab_size"), hidden_size=args.get("dim"), intermediate_size=args.get("hidden_dim"),
        num_hidden_layers=args.get("n_layers"), num_attention_heads=args.get("n_heads"),
        num_key_value_heads=args.get("n_kv_heads"), rms_norm_eps=args.get("norm_eps", 1e-5),
        max_position_embeddings=args.get("max_seq_len"), bos_token_id=bos, eos_token_id=eos,
        tie_word_embeddings="output.weight" not in sd or sd["output.weight"].data_ptr() == embedding.data_ptr(),
    )
    hf = check_state_dict(cfg, meta_to_hf(sd, cfg), str(path))
    return LlamaCheckpoint(cfg, hf, tok, "llama2c", [path])
