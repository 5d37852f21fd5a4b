"""What the host needs of a runtime's teacher-forced logits to score them against every golden reference:
per scored position the log-sum-exp, the argmax and the logit of the actual next token; and the logits
themselves, all of them where a reference keeps every logit (small vocabularies), else only at that
reference's kept ids, plus three numbers on the rest of the vocabulary (its tail), from which the host
bounds the full KL divergence (runtime_tests.metrics.kld_interval): the tail's log-sum-exp, and the sums of
its `spread` smallest and `spread` largest logits (spread = the reference's tail mass over its largest
tail probability, the most ids the reference's tail can put its largest probability on). Row i of
`logits` predicts ids[i + 1]."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KeptIds:
    """One reference's kept ids: position i keeps counts[i] of the flattened ids, in position order."""

    ids: np.ndarray  # [kept] int32
    counts: np.ndarray  # [positions] int32
    spread: np.ndarray  # [positions] float64: tail mass / largest tail probability (0: no tail)


def gather_scores(logits: np.ndarray, ids: list[int], kept: dict[str, KeptIds], full: bool) -> dict[str, np.ndarray]:
    rows = np.asarray(logits, dtype=np.float32)[: len(ids) - 1]
    lse = np.array([_logsumexp(r.astype(np.float64)) for r in rows])
    scores = {"lse": lse, "argmax": rows.argmax(axis=1).astype(np.int64),
              "next_logit": rows[np.arange(len(rows)), np.asarray(ids[1:])].astype(np.float64)}
    if full:
        scores["logits"] = rows
    for name, k in kept.items():
        scores.update({f"{key}.{name}": v for key, v in _kept_scores(rows, k).items()})
    return scores


def _kept_scores(rows: np.ndarray, kept: KeptIds) -> dict[str, np.ndarray]:
    starts = np.concatenate([[0], np.cumsum(kept.counts.astype(np.int64))])
    head = np.empty(int(starts[-1]), dtype=np.float32)
    tail_lse, low, high = (np.zeros(len(rows)) for _ in range(3))
    for i, row in enumerate(rows):  # one row at a time: a 128k-vocabulary copy, not the whole eval set's
        chosen = kept.ids[starts[i]: starts[i + 1]].astype(np.int64)
        head[starts[i]: starts[i + 1]] = row[chosen]
        tail = np.delete(row, chosen).astype(np.float64)
        if tail.size == 0:
            tail_lse[i] = -np.inf
            continue
        tail_lse[i] = _logsumexp(tail)
        low[i], high[i] = _extreme_sums(tail, float(kept.spread[i]))
    return {"topk": head, "tail_lse": tail_lse, "tail_low": low, "tail_high": high}


def _extreme_sums(values: np.ndarray, m: float) -> tuple[float, float]:
    """Sums of the m smallest and the m largest values, m fractional (the last one counts by its fraction)."""
    m = min(max(m, 0.0), float(values.size))
    whole = int(m)
    frac = m - whole
    if whole >= values.size:
        total = float(values.sum())
        return total, total
    low = np.partition(values, whole)
    high = np.partition(values, values.size - 1 - whole)
    low_sum = float(low[:whole].sum()) + frac * float(low[whole])
    high_sum = float(high[values.size - whole:].sum()) + frac * float(high[values.size - 1 - whole])
    return low_sum, high_sum


def _logsumexp(x: np.ndarray) -> float:
    peak = float(x.max())
    return peak + float(np.log(np.exp(x - peak).sum()))
