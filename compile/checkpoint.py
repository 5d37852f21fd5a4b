"""The normalized form every source is read into: a Hugging Face LlamaConfig (as a dict) and an fp32
state dict in Hugging Face names and RoPE layout, so transformers' LlamaForCausalLM is the full model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from llamaport.errors import ConfigError

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)
SUPPORTED_ROPE_SCALING = ("llama3",)


@dataclass(frozen=True)
class TokenizerFile:
    kind: str  # "hf_json" | "sentencepiece" | "tiktoken" | "llama2c"
    path: Path


@dataclass
class LlamaCheckpoint:
    config: dict  # LlamaConfig keyword arguments
    state_dict: dict[str, torch.Tensor]  # HF names, HF (rotate-half) q/k layout, fp32
    tokenizer: TokenizerFile
    source_format: str  # "hf" | "meta" | "llama2c"
    source_files: list[Path] = field(default_factory=list)

    @property
    def bos_id(self) -> int:
        return int(self.config["bos_token_id"])

    @property
    def eos_ids(self) -> list[int]:
        eos = self.config["eos_token_id"]
        return [int(e) for e in (eos if isinstance(eos, list) else [eos])]

    @property
    def head_dim(self) -> int:
        return self.config.get("head_dim") or self.config["hidden_size"] // self.config["num_attention_heads"]


def llama_config(**kw) -> dict:
    """Validated LlamaConfig kwargs with the fields llamaport relies on."""
    cfg = {
        "vocab_size": kw["vocab_size"], "hidden_size": kw["hidden_size"],
        "intermediate_size": kw["intermediate_size"], "num_hidden_layers": kw["num_hidden_layers"],
        "num_attention_heads": kw["num_attention_heads"],
        "num_key_value_heads": kw.get("num_key_value_heads") or kw["num_attention_heads"],
        "head_dim": kw.get("head_dim") or kw["hidden_size"] // kw["num_attention_heads"],
        "rms_norm_eps": float(kw.get("rms_norm_eps", 1e-5)), "rope_theta": float(kw.get("rope_theta", 10000.0)),
        "rope_scaling": kw.get("rope_scaling"), "max_position_embeddings": int(kw.get("max_position_embeddings", 2048)),
        "tie_word_embeddings": bool(kw.get("tie_word_embeddings", False)),
        "bos_token_id": kw["bos_token_id"], "eos_token_id": kw["eos_token_id"],
        "attention_bias": False, "mlp_bias": False, "hidden_act": "silu",
    }
    if cfg["num_attention_heads"] % cfg["num_key_value_heads"]:
        raise ConfigError(f"num_attention_heads {cfg['num_attention_heads']} is not a multiple of "
                          f"num_key_value_heads {cfg['num_key_value_heads']}")
    validate_rope_scaling(cfg["rope_scaling"])
    return cfg


def validate_rope_scaling(rs: dict | None) -> None:
    """ExecuTorch's Llama implements Llama 3.1 scaling with low_freq_factor 1 and an 8192 original
    context hard-coded; anything else would export a model that differs from the source, so refuse."""
    if rs is None:
        return
    kind = rs.get("rope_type", rs.get("type"))
    if kind not in SUPPORTED_ROPE_SCALING:
        raise ConfigError(f"rope_scaling type {kind!r} is not supported; supported: {list(SUPPORTED_ROPE_SCALING)} or none")
    if float(rs.get("low_freq_factor", 1.0)) != 1.0 or int(rs.get("original_max_position_embeddings", 8192)) != 8192:
        raise ConfigError("rope_scaling llama3 is supported with low_freq_factor 1.0 and "
                          "original_max_position_embeddings 8192 (Llama 3.1/3.2), got "
                          f"{rs.get('low_freq_factor')} and {rs.get('original_max_position_embeddings')}")
    if float(rs["factor"]) != int(rs["factor"]) or float(rs.get("high_freq_factor", 4)) != int(rs.get("high_freq_factor", 4)):
        raise ConfigError(f"rope_scaling factor and high_freq_factor must be whole numbers, got {rs}")


def expected_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    h, kv, hd = cfg["hidden_size"], cfg["num_key_value_heads"], cfg["head_dim"]
    shapes = {"model.embed_tokens.weight": (cfg["vocab_size"], h), "model.norm.weight": (h,)}
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (cfg["vocab_size"], h)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "self_attn.q_proj.weight": (cfg["num_attention_heads"] * hd, h),
            p + "self_attn.k_proj.weight": (kv * hd, h), p + "self_attn.v_proj.weight": (kv * hd, h),
            p + "self_attn.o_proj.weight": (h, cfg["num_attention_heads"] * hd),
            p + "mlp.gate_proj.weight": (cfg["intermediate_size"], h),
            p + "mlp.up_proj.weight": (cfg["intermediate_size"], h),
            p + "mlp.down_proj.weight": (h, cfg["intermediate_size"]),
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
        })
    return shapes


def check_state_dict(cfg: dict, sd: dict[str, torch.Tensor], origin: str) -> dict[str, torch.Tensor]:
    """Every expected weight present with the shape the config implies; returned as fp32."""
    expected = expected_shapes(cfg)
    missing = sorted(set(expected) - set(sd))
    if missing:
        raise ConfigError(f"{origin}: missing weights {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    for name, shape in expected.items():
        if tuple(sd[name].shape) != shape:
            raise ConfigError(f"{origin}: {name} has shape {tuple(sd[name].shape)}, the config implies {shape}")
    return {name: sd[name].to(torch.float32).contiguous() for name in expected}
