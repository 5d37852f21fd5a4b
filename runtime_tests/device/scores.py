"""What the host needs of a runtime's teacher-forced logits to score them against every golden reference,
exactly: per scored position the log-sum-exp, the argmax and the logit of the actual next token; and the
logits themselves, all of them where a reference keeps every logit (small vocabularies), else only at
that reference's top-k ids. Row i of `logits` predicts ids[i + 1]."""

from __future__ import annotations

import numpy as np


def gather_scores(logits: np.ndarray, ids: list[int], topk_ids: dict[str, np.ndarray],
                  full: bool) -> dict[str, np.ndarray]:
    rows = np.asarray(logits, dtype=np.float32)[: len(ids) - 1]
    wide = rows.astype(np.float64)
    peak = wide.max(axis=1, keepdims=True)
    lse = (peak[:, 0] + np.log(np.exp(wide - peak).sum(axis=1)))
    scores = {"lse": lse, "argmax": rows.argmax(axis=1).astype(np.int64),
              "next_logit": rows[np.arange(len(rows)), np.asarray(ids[1:])].astype(np.float64)}
    if full:
        scores["logits"] = rows
    for name, chosen in topk_ids.items():
        scores[f"topk.{name}"] = np.take_along_axis(rows, chosen.astype(np.int64), axis=1)
    return scores
