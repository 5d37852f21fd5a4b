"""Accuracy of a model's logits against a golden reference, as llama.cpp's perplexity/KLD tool defines it:
perplexity ratio, KL(reference || candidate) mean and 99th percentile, same-top-1 %, logit SQNR in dB,
max |logit error|; plus greedy match length per prompt."""

from __future__ import annotations

import math

import torch

from llamaport.runtime_tests.golden import Reference

# SQNR of identical logits is infinite; JSON has no infinity, so it is reported as this ceiling.
SQNR_CEILING_DB = 200.0


def perplexity_from_logprobs(next_logprob: torch.Tensor) -> float:
    return float((-next_logprob.double()).mean().exp())


def _kld_topk(ref: Reference, logq: torch.Tensor) -> torch.Tensor:
    """KL over the reference's top-k outcomes plus one bucket for the rest (a lower bound of the full KLD)."""
    logp_k = ref.topk_logits.double() - ref.lse.unsqueeze(1)
    logq_k = logq.gather(1, ref.topk_ids)
    head = (logp_k.exp() * (logp_k - logq_k)).sum(-1)
    p_tail = (1 - logp_k.exp().sum(-1)).clamp_min(0)
    q_tail = (1 - logq_k.exp().sum(-1)).clamp_min(1e-300)
    tail = torch.where(p_tail > 0, p_tail * (p_tail.clamp_min(1e-300).log() - q_tail.log()), torch.zeros_like(p_tail))
    return head + tail


def sqnr_db(signal: torch.Tensor, candidate: torch.Tensor) -> float:
    noise = float(((signal.double() - candidate.double()) ** 2).sum())
    power = float((signal.double() ** 2).sum())
    if noise == 0.0:
        return SQNR_CEILING_DB
    return min(SQNR_CEILING_DB, 10 * math.log10(power / noise))


def compare_to_reference(ref: Reference, logits: torch.Tensor, ids: list[int]) -> dict:
    """`logits` [len(ids), vocab], row i predicting ids[i + 1], against the stored reference."""
    rows = logits[:-1]
    positions = ref.lse.shape[0]
    if rows.shape[0] != positions:
        raise ValueError(f"{rows.shape[0]} scored positions, the golden reference has {positions}")
    logq = torch.log_softmax(rows.double(), dim=-1)
    if ref.kind == "full":
        if rows.shape != ref.logits.shape:
            raise ValueError(f"logit shape {tuple(rows.shape)} differs from the golden {tuple(ref.logits.shape)}")
        logp = torch.log_softmax(ref.logits.double(), dim=-1)
        kld = (logp.exp() * (logp - logq)).sum(-1)
        stored, candidate = ref.logits, rows
    else:
        kld = _kld_topk(ref, logq)
        stored, candidate = ref.topk_logits, rows.gather(1, ref.topk_ids)
    kld = kld.clamp_min(0.0)
    next_logprob = logq.gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1)
    ppl_ref, ppl = perplexity_from_logprobs(ref.next_logprob), perplexity_from_logprobs(next_logprob)
    return {
        "positions": positions,
        "logits_compared": ref.kind,
        "same_top1_pct": float((rows.argmax(-1) == ref.top1()).double().mean() * 100),
        "kld_mean": float(kld.mean()),
        "kld_p99": float(torch.quantile(kld, 0.99)),
        "ppl_reference": ppl_ref,
        "ppl": ppl,
        "ppl_ratio": ppl / ppl_ref,
        "logit_sqnr_db": sqnr_db(stored, candidate),
        "max_abs_logit_error": float((stored.double() - candidate.double()).abs().max()),
        "kld_per_position": [float(x) for x in kld],
    }


def greedy_match(reference: list[int], candidate: list[int]) -> int:
    """Length of the common prefix of two greedy continuations."""
    n = 0
    for a, b in zip(reference, candidate):
        if a != b:
            break
        n += 1
    return n


def greedy_summary(references: list[list[int]], candidates: list[list[int]], tokens: int) -> dict:
    matches = [greedy_match(r, c) for r, c in zip(references, candidates)]
    return {"greedy_tokens": tokens, "greedy_match_lengths": matches,
            "greedy_match_pct": 100.0 * sum(matches) / (len(matches) * tokens),
            "greedy_identical": all(m == tokens for m in matches)}
