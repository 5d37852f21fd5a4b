"""Accuracy of a compiled model against the full model, as llama.cpp's perplexity/KLD tool defines it."""

from __future__ import annotations

import torch


def next_token_nll(logits: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """Negative log-likelihood of each next token: row i of logits scores ids[i + 1]."""
    logp = torch.log_softmax(logits[:-1].double(), dim=-1)
    return -logp.gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1)


def perplexity(logits: torch.Tensor, ids: list[int]) -> float:
    return float(next_token_nll(logits, ids).mean().exp())


def compare_logits(full: torch.Tensor, other: torch.Tensor, ids: list[int]) -> dict:
    """Same-top-1 %, KL(full || other) mean and p99, perplexity ratio, over teacher-forced positions."""
    if full.shape != other.shape:
        raise ValueError(f"logit shapes differ: {tuple(full.shape)} vs {tuple(other.shape)}")
    p_log = torch.log_softmax(full[:-1].double(), dim=-1)
    q_log = torch.log_softmax(other[:-1].double(), dim=-1)
    kld = (p_log.exp() * (p_log - q_log)).sum(-1).clamp_min(0.0)
    ppl_full, ppl_other = perplexity(full, ids), perplexity(other, ids)
    return {
        "positions": int(kld.numel()),
        "same_top1_pct": float((full[:-1].argmax(-1) == other[:-1].argmax(-1)).double().mean() * 100),
        "kld_mean": float(kld.mean()),
        "kld_p99": float(torch.quantile(kld, 0.99)),
        "ppl_full": ppl_full,
        "ppl": ppl_other,
        "ppl_ratio": ppl_other / ppl_full,
        "max_abs_logit_error": float((full - other).abs().max()),
    }


def greedy_match(reference: list[int], candidate: list[int]) -> int:
    """Length of the common prefix of two greedy continuations."""
    n = 0
    for a, b in zip(reference, candidate):
        if a != b:
            break
        n += 1
    return n
