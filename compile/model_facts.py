"""The model's shape and ids as the manifest states them, from the normalized checkpoint."""

from __future__ import annotations

from llamaport.runtime_tests.manifest import ModelFacts


def parameter_count(cfg: dict) -> int:
    h, inter, layers, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    heads, kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    per_layer = h * heads * hd + 2 * h * kv * hd + heads * hd * h + 3 * h * inter + 2 * h
    return layers * per_layer + vocab * h * (1 if cfg["tie_word_embeddings"] else 2) + h


def model_facts(ckpt, context_len: int, rope_layout: str = "meta-interleaved") -> ModelFacts:
    cfg = ckpt.config
    return ModelFacts(
        architecture="LlamaForCausalLM", vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
        num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=cfg["num_attention_heads"],
        num_key_value_heads=cfg["num_key_value_heads"], head_dim=cfg["head_dim"],
        intermediate_size=cfg["intermediate_size"], tie_word_embeddings=cfg["tie_word_embeddings"],
        bos_id=ckpt.bos_id, eos_ids=tuple(ckpt.eos_ids), context_len=context_len, rope_theta=float(cfg["rope_theta"]),
        rope_scaling=cfg["rope_scaling"], rope_layout=rope_layout, parameters=parameter_count(cfg))
