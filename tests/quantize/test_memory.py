"""The runtime-memory estimate a target's memory_budget_mb is checked against."""

import pytest

from llamaport.quantize import resolve_scheme
from llamaport.quantize.memory import estimate_runtime_memory

LLAMA_3_2_1B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "vocab_size": 128256,
                "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "tie_word_embeddings": True}


def test_weights_shrink_with_the_scheme_and_the_kv_cache_grows_with_the_context():
    fp32 = estimate_runtime_memory(LLAMA_3_2_1B, resolve_scheme("fp32"), 1024)
    q4 = estimate_runtime_memory(LLAMA_3_2_1B, resolve_scheme("8da4w-g32"), 1024)
    assert fp32.weights == pytest.approx(1.236e9 * 4, rel=0.02)  # 1.24B parameters, tied embedding stored once
    # 4-bit body and output layer plus scales, fp32 embedding: the 1.75 GB ExecuTorch bundle of this shape
    assert q4.weights == pytest.approx(1.75e9, rel=0.1)
    assert q4.kv_cache == 2 * 16 * 8 * 64 * 1024 * 4
    assert estimate_runtime_memory(LLAMA_3_2_1B, resolve_scheme("8da4w-g32"), 2048).kv_cache == 2 * q4.kv_cache
