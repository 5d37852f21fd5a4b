"""Accuracy of a model's logits against a golden reference, as llama.cpp's perplexity/KLD tool defines it:
perplexity ratio, KL(reference || candidate) mean, median, 99th and 99.9th percentiles, same-top-1 %, Δp (the
change of the next token's probability), each mean with its standard error; logit SQNR in dB, max |logit
error|; plus greedy match length per prompt."""

from __future__ import annotations

import math

import numpy as np
import torch

from llamaport.runtime_tests.golden import Reference

# SQNR of identical logits is infinite; JSON has no infinity, so it is reported as this ceiling.
SQNR_CEILING_DB = 200.0


def perplexity_from_logprobs(next_logprob: torch.Tensor) -> float:
    return float((-next_logprob.double()).mean().exp())


def kld_interval(ref: Reference, name: str, scores: dict, lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per position, the full-vocabulary KL(reference || candidate) bounded from both sides, exactly, from
    what an adaptive top-k reference keeps and what the device sends on the tail T (its log-sum-exp and the
    sums of its m smallest and m largest logits, m = p_T / p_max):

        KL = head + Σ_T p log p + Σ_T p c,   c = -log q ≥ 0, head exact over the kept ids;
        Σ_T p c ≤ p_max · (sum of the m largest c)     (rearrangement: 0 ≤ p ≤ p_max, Σ p = p_T)
        Σ_T p c ≥ p_max · (sum of the m smallest c),  and  KL_T ≥ p_T log(p_T / q_T)  (log-sum inequality).

    Returns (lower, upper); both equal the exact value where nothing is left in the tail."""
    def f64(key):
        return torch.from_numpy(np.asarray(scores[f"{key}.{name}"], dtype=np.float64))
    row_of = torch.repeat_interleave(torch.arange(ref.topk_counts.numel()), ref.topk_counts.long())
    logp = ref.topk_logits.double() - ref.lse[row_of]
    logq = f64("topk") - lse[row_of]
    head = torch.zeros_like(lse).index_add_(0, row_of, logp.exp() * (logp - logq))
    p_tail, pmax, plogp = ref.tail_mass.double(), ref.tail_pmax.double(), ref.tail_plogp.double()
    spread = torch.where(pmax > 0, p_tail / pmax.clamp_min(1e-300), torch.zeros_like(pmax))
    # sums of the m largest / smallest c = lse - logit are m·lse minus the sums of the m smallest / largest logits
    c_high, c_low = spread * lse - f64("tail_low"), spread * lse - f64("tail_high")
    upper = head + plogp + pmax * c_high
    q_tail = (f64("tail_lse") - lse).exp()
    log_sum = torch.where(p_tail > 0, p_tail * (p_tail.clamp_min(1e-300).log() - q_tail.clamp_min(1e-300).log()),
                          torch.zeros_like(p_tail))
    lower = head + torch.maximum(log_sum, plogp + pmax * c_low)
    return lower, torch.maximum(upper, lower)


def sqnr_db(signal: torch.Tensor, candidate: torch.Tensor) -> float:
    noise = float(((signal.double() - candidate.double()) ** 2).sum())
    power = float((signal.double() ** 2).sum())
    if noise == 0.0:
        return SQNR_CEILING_DB
    return min(SQNR_CEILING_DB, 10 * math.log10(power / noise))


def mean_and_se(x: torch.Tensor) -> tuple[float, float | None]:
    """The mean and its standard error as llama.cpp's `mean_and_uncertainty` gives them: sqrt(population
    variance / (n - 1)), the same as the sample standard deviation / sqrt(n). llama.cpp prints 0 for ten values
    or fewer; here that is None (unknown), so a gate is never said to be missed beyond a noise nobody measured."""
    n, mean = x.numel(), float(x.mean())
    if n <= 10:
        return mean, None
    return mean, math.sqrt(float(((x - mean) ** 2).mean()) / (n - 1))


def spread_statistics(kld: torch.Tensor, next_logprob: torch.Tensor, ref_next_logprob: torch.Tensor,
                      same_top1: torch.Tensor) -> dict:
    """The statistics llama.cpp's perplexity tool prints after a --kl-divergence run (tools/perplexity/
    perplexity.cpp, kl_divergence(): "Mean PPL(Q)/PPL(base)", "Mean KLD", "Median KLD", "99.9% KLD",
    "Mean Δp", "RMS Δp", "Same top p"), with the same formulas, so a figure and its ± read as theirs do.
    Without a ±, a 1.5-point miss of a same-top-1 gate over 255 positions cannot be told from noise."""
    n = kld.numel()
    # ln(PPL(Q)/PPL(base)) is the mean over positions of nll_q - nll_base; llama.cpp's ± of it,
    # sqrt(se_q² + se_base² - 2 cov), is exactly the standard error of those per-position differences.
    # The ratio's ± follows by d(e^x)/dx = e^x: ratio × se_ln.
    ln_ratio, ln_ratio_se = mean_and_se(ref_next_logprob - next_logprob)
    kld_mean, kld_se = mean_and_se(kld)
    # Δp = p_Q(next token) - p_base(next token). RMS Δp = sqrt(mean Δp²); its ± from the ± of mean Δp² by
    # d(sqrt x)/dx = 1 / (2 sqrt x), as llama.cpp does (0 where Δp is 0 everywhere: nothing to spread).
    dp = next_logprob.exp() - ref_next_logprob.exp()
    dp_mean, dp_se = mean_and_se(dp)
    mse, mse_se = mean_and_se(dp ** 2)
    rms = math.sqrt(mse)
    rms_se = None if mse_se is None else (0.5 / rms * mse_se if rms > 0 else 0.0)
    # Same top p: a binomial proportion; llama.cpp's ± is sqrt(p (1 - p) / (n - 1)).
    p = float(same_top1.double().mean())
    same_se = None if n <= 10 else 100 * math.sqrt(p * (1 - p) / (n - 1))
    ratio = math.exp(ln_ratio)
    return {
        "same_top1_se_pct": same_se,
        "kld_se": kld_se,
        # torch.quantile interpolates linearly between the two nearest values, as llama.cpp's `percentile`
        # does; its median of an even count is the mean of the middle two, as llama.cpp's is.
        "kld_median": float(torch.quantile(kld, 0.5)),
        "kld_p999": float(torch.quantile(kld, 0.999)),
        "ppl_ratio_se": None if ln_ratio_se is None else ratio * ln_ratio_se,
        "delta_p_mean_pct": 100 * dp_mean,
        "delta_p_se_pct": None if dp_se is None else 100 * dp_se,
        "delta_p_rms_pct": 100 * rms,
        "delta_p_rms_se_pct": None if rms_se is None else 100 * rms_se,
    }


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
        kld_lower, kld = kld_interval(ref, name, scores, lse)
        stored = ref.topk_logits
    kld = kld.clamp_min(0.0)
    kld_lower = kld if ref.kind == "full" else kld_lower.clamp_min(0.0)
    next_logprob = torch.from_numpy(np.asarray(scores["next_logit"], dtype=np.float64)) - lse
    ppl_ref, ppl = perplexity_from_logprobs(ref.next_logprob), perplexity_from_logprobs(next_logprob)
    argmax = torch.from_numpy(np.asarray(scores["argmax"], dtype=np.int64))
    same_top1 = argmax == ref.top1()
    return {
        "positions": positions,
        "logits_compared": ref.kind,
        "same_top1_pct": float(same_top1.double().mean() * 100),
        "kld_mean": float(kld.mean()),  # the upper end of the interval where the golden keeps top-k: never low
        "kld_lower_mean": float(kld_lower.mean()),
        "kld_p99": float(torch.quantile(kld, 0.99)),
        "ppl_reference": ppl_ref,
        "ppl": ppl,
        "ppl_ratio": ppl / ppl_ref,
        "logit_sqnr_db": sqnr_db(stored, candidate),
        "max_abs_logit_error": float((stored.double() - candidate.double()).abs().max()),
        "kld_per_position": [float(x) for x in kld],
        **spread_statistics(kld, next_logprob, ref.next_logprob.double(), same_top1),
    }


def compare_to_reference(ref: Reference, logits, ids: list[int], name: str = "reference") -> dict:
    """`logits` [len(ids), vocab] (row i predicting ids[i + 1]) against the stored reference, through the
    same scores a device sends."""
    from llamaport.runtime_tests.device.scores import gather_scores

    from llamaport.runtime_tests.scoring import kept_ids_of

    topk = {name: kept_ids_of(ref)} if ref.kind == "topk" else {}
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
