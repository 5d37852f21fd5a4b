"""Accuracy of a model's logits against a golden reference, as llama.cpp's perplexity/KLD tool defines it:
perplexity ratio, KL(reference || candidate) mean and 99th percentile, same-top-1 %, logit SQNR in dB,
max |logit error|; plus greedy match length per prompt."""

from __future__ import annotations

import math

import numpy as np
import torch

from llamaport.runtime_tests.golden import Reference

# SQNR of identical logits is infinite; JSON has no infinity, so it is reported as this ceiling.
SQNR_CEILING_DB = 200.0


def perplexity_from_logprobs(next_logprob: torch.Tensor) -> float:
    return float((-next_logprob.double()).mean().exp())


def _kld_topk(ref: Reference, logq_k: torch.Tensor) -> torch.Tensor:
    """KL over the reference's top-k outcomes plus one bucket for the rest (a lower bound of the full KLD)."""
    logp_k = ref.topk_logits.double() - ref.lse.unsqueeze(1)
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


def compare_scores(ref: Reference, name: str, scores: dict, ids: list[int]) -> dict:
    """A runtime's scores of the golden positions (llamaport.runtime_tests.device.scores.gather_scores: the
    log-sum-exp, argmax and next-token logit of each position, and its logits at what `ref` keeps) against
    the stored reference `name`."""
    lse = torch.from_numpy(np.asarray(scores["lse"], dtype=np.float64))
    positions = ref.lse.shape[0]
    if lse.shape[0] != positions:
        raise ValueError(f"{lse.shape[0]} scored positions, the golden reference has {positions}")
    if ref.kind == "full":
        candidate = torch.from_numpy(np.asarray(scores["logits"]))
        if candidate.shape != ref.logits.shape:
            raise ValueError(f"logit shape {tuple(candidate.shape)} differs from the golden {tuple(ref.logits.shape)}")
        logp = torch.log_softmax(ref.logits.double(), dim=-1)
        kld = (logp.exp() * (logp - (candidate.double() - lse.unsqueeze(1)))).sum(-1)
        stored = ref.logits
    else:
        candidate = torch.from_numpy(np.asarray(scores[f"topk.{name}"]))
        kld = _kld_topk(ref, candidate.double() - lse.unsqueeze(1))
        stored = ref.topk_logits
    kld = kld.clamp_min(0.0)
    next_logprob = torch.from_numpy(np.asarray(scores["next_logit"], dtype=np.float64)) - lse
    ppl_ref, ppl = perplexity_from_logprobs(ref.next_logprob), perplexity_from_logprobs(next_logprob)
    argmax = torch.from_numpy(np.asarray(scores["argmax"], dtype=np.int64))
    return {
        "positions": positions,
        "logits_compared": ref.kind,
        "same_top1_pct": float((argmax == ref.top1()).double().mean() * 100),
        "kld_mean": float(kld.mean()),
        "kld_p99": float(torch.quantile(kld, 0.99)),
        "ppl_reference": ppl_ref,
        "ppl": ppl,
        "ppl_ratio": ppl / ppl_ref,
        "logit_sqnr_db": sqnr_db(stored, candidate),
        "max_abs_logit_error": float((stored.double() - candidate.double()).abs().max()),
        "kld_per_position": [float(x) for x in kld],
    }


def compare_to_reference(ref: Reference, logits, ids: list[int], name: str = "reference") -> dict:
    """`logits` [len(ids), vocab] (row i predicting ids[i + 1]) against the stored reference, through the
    same scores a device sends."""
    from llamaport.runtime_tests.device.scores import gather_scores

    topk = {name: ref.topk_ids.numpy()} if ref.kind == "topk" else {}
    rows = logits.numpy() if isinstance(logits, torch.Tensor) else np.asarray(logits)
    return compare_scores(ref, name, gather_scores(rows, ids, topk, ref.kind == "full"), ids)


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
