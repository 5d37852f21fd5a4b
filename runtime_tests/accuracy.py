"""A model's accuracy against the bundle's golden outputs, computed in this process the way a device's
raw results are scored on the host: its teacher-forced logits reduced to the device's scores
(llamaport.runtime_tests.device.scores), its greedy runs, then llamaport.runtime_tests.scoring. Used by
the build's own gate and the eager baseline."""

from __future__ import annotations

import numpy as np

from llamaport.runtime_tests.device.scores import gather_scores
from llamaport.runtime_tests.device.timing import greedy
from llamaport.runtime_tests.golden import Golden
from llamaport.runtime_tests.scoring import golden_topk_ids, score


def raw_scores(model, golden: Golden) -> dict[str, np.ndarray]:
    logits = model.teacher_forced_logits(golden.ids)
    rows = logits.numpy() if hasattr(logits, "numpy") else np.asarray(logits)
    full = any(r.kind == "full" for r in golden.references.values())
    return gather_scores(rows, golden.ids, golden_topk_ids(golden), full)


def accuracy_of(model, golden: Golden) -> dict:
    runs = [greedy(model, p, golden.greedy_tokens) for p in golden.prompts]
    return score(golden, raw_scores(model, golden), runs)
