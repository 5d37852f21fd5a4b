"""The full model, the reference for every accuracy number: transformers' LlamaForCausalLM, fp32, eager."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from llamaport.compile.checkpoint import LlamaCheckpoint


def full_model(ckpt: LlamaCheckpoint) -> LlamaForCausalLM:
    config = LlamaConfig(**ckpt.config, torch_dtype=torch.float32, attn_implementation="eager")
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    model.load_state_dict(ckpt.state_dict, strict=False, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    if missing:
        raise ValueError(f"full model left weights unset: {missing[:3]}")
    model.model.rotary_emb = type(model.model.rotary_emb)(config=config)  # rope buffers were built on meta
    return model.eval()


@torch.inference_mode()
def teacher_forced_logits(model: LlamaForCausalLM, ids: list[int]) -> torch.Tensor:
    """[len(ids), vocab] logits: row i predicts token i+1."""
    return model(torch.tensor([ids])).logits[0].float()


@torch.inference_mode()
def greedy_tokens(model: LlamaForCausalLM, prompt: list[int], new_tokens: int) -> list[int]:
    """Exactly `new_tokens` argmax tokens (EOS does not stop it: the comparison needs equal lengths)."""
    out = model(torch.tensor([prompt]), use_cache=True)
    past, tokens = out.past_key_values, []
    for _ in range(new_tokens):
        nxt = int(out.logits[0, -1].argmax())
        tokens.append(nxt)
        out = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
    return tokens
