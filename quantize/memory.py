"""The runtime memory a bundle will need, estimated from the model's shape and the scheme before any
weight is read: weights as stored, the KV cache (fp32 or int8) at the context length, and the activations of one
full-context prefill. A target's memory_budget_mb is checked against it."""

from __future__ import annotations

from dataclasses import dataclass

from llamaport.quantize.schemes import EmbeddingQuant, LinearQuant, QuantScheme


def _linear_bytes_per_weight(q: LinearQuant) -> float:
    if q.kind == "fp32":
        return 4.0
    bits = 4 if q.kind in ("4w", "8da4w") else 8
    # an fp32 scale per group (and a zero point where rounding is asymmetric); per output row when ungrouped
    per_group = (8.0 if q.algorithm == "rtn" else 4.0) / q.group_size if q.group_size else 0.0
    return bits / 8 + per_group


def _embedding_bytes_per_weight(q: EmbeddingQuant) -> float:
    return 4.0 if q.bits == 32 else q.bits / 8 + (4.0 / q.group_size if q.group_size else 0.0)


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    kv_cache: int
    activations: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.activations

    def describe(self) -> str:
        mb = 2 ** 20
        return (f"{self.total / mb:,.1f} MB (weights {self.weights / mb:,.1f} + KV cache {self.kv_cache / mb:,.1f} + "
                f"activations {self.activations / mb:,.1f})")


def estimate_runtime_memory(cfg: dict, scheme: QuantScheme, context_len: int) -> MemoryEstimate:
    h, inter, layers, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    heads, kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    per_layer = h * heads * hd + 2 * h * kv * hd + heads * hd * h + 3 * h * inter
    weights = (layers * per_layer * _linear_bytes_per_weight(scheme.linear)
               + vocab * h * _embedding_bytes_per_weight(scheme.embedding) + (2 * layers + 1) * h * 4)
    if not cfg["tie_word_embeddings"] or scheme.output_quant != LinearQuant():
        weights += vocab * h * _linear_bytes_per_weight(scheme.output_quant)
    # fp32 entries, or int8 ones with an fp32 scale and an int8 zero point per token and head (ExecuTorch's layout)
    per_token_head = hd * 4 if scheme.kv_cache == 32 else hd + 4 + 1
    kv_cache = 2 * layers * kv * context_len * per_token_head
    # one layer's hidden states, MLP and attention scores for a full-context prefill, plus the logits
    activations = context_len * (4 * h + 2 * inter) * 4 + heads * context_len * context_len * 4 + vocab * 4
    return MemoryEstimate(int(weights), kv_cache, activations)
