"""Weight names and RoPE layouts: Hugging Face (rotate-half) <-> Meta / llama2.c (interleaved pairs).

The q/k permutation is the one transformers' convert_llama_weights_to_hf applies; a test proves the
round trip and that ExecuTorch's Meta-layout Llama on converted weights matches transformers.
"""

from __future__ import annotations

import torch

_LAYER_NAMES = {  # HF suffix -> Meta suffix
    "self_attn.q_proj.weight": "attention.wq.weight", "self_attn.k_proj.weight": "attention.wk.weight",
    "self_attn.v_proj.weight": "attention.wv.weight", "self_attn.o_proj.weight": "attention.wo.weight",
    "mlp.gate_proj.weight": "feed_forward.w1.weight", "mlp.down_proj.weight": "feed_forward.w2.weight",
    "mlp.up_proj.weight": "feed_forward.w3.weight", "input_layernorm.weight": "attention_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
_TOP_NAMES = {"model.embed_tokens.weight": "tok_embeddings.weight", "model.norm.weight": "norm.weight",
              "lm_head.weight": "output.weight"}


def meta_to_hf_rope(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    rows, cols = w.shape
    return w.view(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def hf_to_meta_rope(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    rows, cols = w.shape
    return w.view(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


def _heads_for(suffix: str, cfg: dict) -> int | None:
    if suffix.endswith(("q_proj.weight", "attention.wq.weight")):
        return cfg["num_attention_heads"]
    if suffix.endswith(("k_proj.weight", "attention.wk.weight")):
        return cfg["num_key_value_heads"]
    return None


def hf_to_meta(sd: dict[str, torch.Tensor], cfg: dict, permute_rope: bool = True) -> dict[str, torch.Tensor]:
    """Meta names; q/k rows permuted to Meta's interleaved RoPE unless `permute_rope` is False (for
    ExecuTorch's use_hf_rope, which rotates halves as Hugging Face does)."""
    out = {}
    for name, w in sd.items():
        if name in _TOP_NAMES:
            out[_TOP_NAMES[name]] = w
            continue
        _, _, idx, suffix = name.split(".", 3)
        heads = _heads_for(suffix, cfg)
        out[f"layers.{idx}.{_LAYER_NAMES[suffix]}"] = w if heads is None or not permute_rope else hf_to_meta_rope(w, heads)
    if cfg["tie_word_embeddings"]:
        out["output.weight"] = out["tok_embeddings.weight"]
    return out


def meta_to_hf_names(names, cfg: dict) -> dict[str, str]:
    """HF name -> Meta name for every weight among `names` (llama2.c's rope tables and the like left out)."""
    top = {v: k for k, v in _TOP_NAMES.items()}
    layer = {v: k for k, v in _LAYER_NAMES.items()}
    out = {}
    for name in names:
        if name in top:
            out[top[name]] = name
            continue
        if not name.startswith("layers."):
            continue  # e.g. llama2.c's rope tables: recomputed, not weights
        _, idx, suffix = name.split(".", 2)
        if suffix in layer:
            out[f"model.layers.{idx}.{layer[suffix]}"] = name
    if cfg["tie_word_embeddings"]:
        out.pop("lm_head.weight", None)
    return out


def to_hf_rope(hf_name: str, w: torch.Tensor, cfg: dict) -> torch.Tensor:
    """A Meta-layout tensor in HF layout: q/k rows back to rotate-half, anything else as it is."""
    heads = _heads_for(hf_name, cfg)
    return w if heads is None else meta_to_hf_rope(w, heads)


def meta_to_hf(sd: dict[str, torch.Tensor], cfg: dict) -> dict[str, torch.Tensor]:
    return {hf: to_hf_rope(hf, sd[meta], cfg) for hf, meta in meta_to_hf_names(sd, cfg).items()}
