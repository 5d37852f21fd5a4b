"""The first accuracy gate inside build: the full model against the exported artifact on eval text."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from compile.eval_data import EvalSet
from runtime_tests.metrics import compare_logits, greedy_match
from targets import Gate


@dataclass
class Golden:
    """The full model's outputs on the eval set, kept after the model itself is dropped."""

    logits: torch.Tensor
    greedy: list[list[int]]


def golden_outputs(model, eval_set: EvalSet) -> Golden:
    from compile.reference import greedy_tokens, teacher_forced_logits

    return Golden(teacher_forced_logits(model, eval_set.ids),
                  [greedy_tokens(model, p, eval_set.greedy_tokens) for p in eval_set.prompts])


def measure_executorch(pte: Path, eval_set: EvalSet, golden: Golden) -> dict:
    from runtime_tests.executorch_runner import ExecuTorchModel

    model = ExecuTorchModel(pte)
    metrics = compare_logits(golden.logits, model.teacher_forced_logits(eval_set.ids), eval_set.ids)
    runs = [model.greedy(p, eval_set.greedy_tokens)[0] for p in eval_set.prompts]
    matches = [greedy_match(g, r) for g, r in zip(golden.greedy, runs)]
    metrics.update(
        greedy_tokens=eval_set.greedy_tokens, greedy_match_lengths=matches,
        greedy_match_pct=100.0 * sum(matches) / (len(matches) * eval_set.greedy_tokens),
        greedy_identical=all(m == eval_set.greedy_tokens for m in matches), eval_text=eval_set.source,
    )
    return metrics


def missed_gates(metrics: dict, gates: tuple[Gate, ...]) -> list[dict]:
    failures = []
    for gate in gates:
        by = gate.missed_by(metrics[gate.metric])
        if by is not None:
            failures.append({"gate": gate.describe(), "value": metrics[gate.metric], "missed_by": by})
    return failures
