"""The normalized form every source is read into: a Hugging Face LlamaConfig (as a dict) and an fp32
state dict in Hugging Face names and RoPE layout, so transformers' LlamaForCausalLM is the full model."""

from __future__ import annotations

from collections.abc import Mapping
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
    # HF names, HF (rotate-half) q/k layout, fp32; for large files a LazyWeights, read on each access
    state_dict: Mapping[str, torch.Tensor]
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


REQUIRED_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                   "bos_token_id", "eos_token_id")
POSITIVE_INTS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "head_dim", "max_position_embeddings")
MIN_CONTEXT = 32  # the shortest context a build makes (its eval set needs prompts and continuations)


def llama_config(source: Path | str | None = None, names: dict[str, str] | None = None, /, **kw) -> dict:
    """Validated LlamaConfig kwargs with the fields llamaport relies on: every model config (config.json,
    params.json, a llama2.c header or model_args) passes through here, so a field of the wrong type or range is
    refused in one line naming the file and the source's own name for the field (`names`: ours -> the source's)."""
    fields = _ConfigFields(source, names or {})
    for key in REQUIRED_FIELDS:
        if kw.get(key) is None:
            raise fields.error(f"missing field {fields.name(key)}")
    for key in POSITIVE_INTS:
        if kw.get(key) is not None:
            fields.positive_int(key, kw[key])
    for key, low, high, wanted in (("rms_norm_eps", 0.0, 1.0, "above 0 and below 1"), ("rope_theta", 1.0, None, "above 1")):
        if key in kw:
            fields.number(key, kw[key], low, high, wanted)
    fields.token_ids(kw)
    tie = kw.get("tie_word_embeddings", False)
    if not isinstance(tie, bool):
        raise fields.error(f"{fields.name('tie_word_embeddings')} must be true or false, got {tie!r}")
    if kw.get("rope_scaling") is not None and not isinstance(kw["rope_scaling"], dict):
        raise fields.error(f"{fields.name('rope_scaling')} must be a JSON object or null, got {kw['rope_scaling']!r}")
    heads, hidden = kw["num_attention_heads"], kw["hidden_size"]
    if not kw.get("head_dim") and hidden % heads:
        raise fields.error(f"{fields.name('hidden_size')} {hidden} is not a multiple of {fields.name('num_attention_heads')} "
                           f"{heads} (and no head_dim is given)")
    cfg = {
        "vocab_size": kw["vocab_size"], "hidden_size": hidden, "intermediate_size": kw["intermediate_size"],
        "num_hidden_layers": kw["num_hidden_layers"], "num_attention_heads": heads,
        "num_key_value_heads": kw.get("num_key_value_heads") or heads, "head_dim": kw.get("head_dim") or hidden // heads,
        "rms_norm_eps": float(kw.get("rms_norm_eps", 1e-5)), "rope_theta": float(kw.get("rope_theta", 10000.0)),
        "rope_scaling": kw.get("rope_scaling"), "max_position_embeddings": int(kw.get("max_position_embeddings") or 2048),
        "tie_word_embeddings": tie, "bos_token_id": kw["bos_token_id"], "eos_token_id": kw["eos_token_id"],
        "attention_bias": False, "mlp_bias": False, "hidden_act": "silu",
    }
    if cfg["num_attention_heads"] % cfg["num_key_value_heads"]:
        raise fields.error(f"{fields.name('num_attention_heads')} {cfg['num_attention_heads']} is not a multiple of "
                           f"{fields.name('num_key_value_heads')} {cfg['num_key_value_heads']}")
    if cfg["max_position_embeddings"] < MIN_CONTEXT:
        raise fields.error(f"{fields.name('max_position_embeddings')} {cfg['max_position_embeddings']} is below the "
                           f"shortest context llamaport builds ({MIN_CONTEXT})")
    try:
        validate_rope_scaling(cfg["rope_scaling"])
    except ConfigError as e:
        raise fields.error(str(e)) from e
    return cfg


class _ConfigFields:
    """Messages for one source's config: its file and its own field names."""

    def __init__(self, source, names: dict[str, str]):
        self.source, self.names = source, names

    def name(self, key: str) -> str:
        return self.names.get(key, key)

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {message}" if self.source else message)

    def positive_int(self, key: str, value) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.error(f"{self.name(key)} must be a positive integer, got {value!r}")

    def number(self, key: str, value, low: float, high: float | None, wanted: str) -> None:
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value > low and (high is None or value < high)
        if not ok:
            raise self.error(f"{self.name(key)} must be a number {wanted}, got {value!r}")

    def token_ids(self, kw: dict) -> None:
        def is_id(v):
            return isinstance(v, int) and not isinstance(v, bool)
        if not is_id(kw["bos_token_id"]):
            raise self.error(f"{self.name('bos_token_id')} must be an integer token id, got {kw['bos_token_id']!r}")
        eos = kw["eos_token_id"]
        if not (is_id(eos) or isinstance(eos, list) and eos and all(is_id(e) for e in eos)):
            raise self.error(f"{self.name('eos_token_id')} must be an integer token id or a list of them, got {eos!r}")


def validate_rope_scaling(rs: dict | None) -> None:
    """ExecuTorch's Llama implements Llama 3.1 scaling with low_freq_factor 1 and an 8192 original
    context hard-coded; anything else would export a model that differs from the source, so refuse."""
    if rs is None:
        return
    kind = rs.get("rope_type", rs.get("type"))
    if kind not in SUPPORTED_ROPE_SCALING:
        raise ConfigError(f"rope_scaling type {kind!r} is not supported; supported: {list(SUPPORTED_ROPE_SCALING)} or none")
    for key, default in (("factor", None), ("low_freq_factor", 1.0), ("high_freq_factor", 4.0),
                         ("original_max_position_embeddings", 8192)):
        value = rs.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"rope_scaling needs a numeric {key} above 0, got {value!r}")
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


def check_state_dict(cfg: dict, sd: Mapping[str, torch.Tensor], origin: str) -> Mapping[str, torch.Tensor]:
    """Every expected weight present, of a floating-point type, finite, with the shape the config implies;
    returned as fp32. Lazily read weights (LazyWeights) are read one tensor at a time for the checks and
    stay lazy: what is returned reads them again, in fp32, when a stage asks."""
    from llamaport.compile.lazy_weights import LazyWeights

    # The layer count first, by the weights' own names: a config claiming 2**31 layers must not make a
    # 2**31-entry table of expected names (an out-of-memory kill) before it is refused.
    indices = {int(k.split(".")[2]) for k in sd if k.startswith("model.layers.") and k.split(".")[2].isdigit()}
    if cfg["num_hidden_layers"] != len(indices) or indices != set(range(len(indices))):
        raise ConfigError(f"{origin}: the config says num_hidden_layers {cfg['num_hidden_layers']}, the weights hold "
                          f"{len(indices)} layers{'' if indices == set(range(len(indices))) else ' (not numbered 0 up)'}")
    expected = expected_shapes(cfg)
    missing = sorted(set(expected) - set(sd))
    if missing:
        raise ConfigError(f"{origin}: missing weights {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    lazy = isinstance(sd, LazyWeights)
    out = {}
    for name, shape in expected.items():
        t = sd.raw(name) if lazy else sd[name]
        _check_tensor(t, name, shape, origin)
        if not lazy:
            out[name] = sd[name].to(torch.float32).contiguous()
    return sd.only(expected) if lazy else out


def _check_tensor(t, name: str, shape: tuple[int, ...], origin: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise ConfigError(f"{origin}: {name} is a {type(t).__name__}, not a tensor")
    if tuple(t.shape) != shape:
        raise ConfigError(f"{origin}: {name} has shape {tuple(t.shape)}, the config implies {shape}")
    if not t.is_floating_point():
        raise ConfigError(f"{origin}: {name} is {str(t.dtype).removeprefix('torch.')}; llamaport reads floating-point "
                          "weights (fp32, fp16, bf16): dequantize the checkpoint first")
    # The sum is finite for any finite tensor short of overflow: one pass, no tensor-sized mask unless it is not.
    if not torch.isfinite(t.sum(dtype=torch.float32)) and (bad := int((~torch.isfinite(t)).sum())):
        raise ConfigError(f"{origin}: {name} holds {bad} NaN or infinite values; the file is corrupt (fetch it "
                          "again) or was saved from a run that diverged")
