"""Golden outputs at build time: the full model and the recipe's quantized eager model score the eval
set; their outputs (not the models) go into the bundle. Full vs quantized eager is the quantization gap."""

from __future__ import annotations

import gc

import torch

from compile.checkpoint import LlamaCheckpoint
from compile.eval_data import EvalSet
from quantize.schemes import QuantScheme
from runtime_tests.golden import Golden, Reference
from runtime_tests.metrics import compare_to_reference, greedy_summary


def _full_model_outputs(ckpt: LlamaCheckpoint, eval_set: EvalSet) -> tuple[torch.Tensor, list[list[int]]]:
    from compile.reference import full_model, greedy_tokens, teacher_forced_logits

    model = full_model(ckpt)
    outputs = (teacher_forced_logits(model, eval_set.ids),
               [greedy_tokens(model, p, eval_set.greedy_tokens) for p in eval_set.prompts])
    del model
    gc.collect()
    return outputs


@torch.inference_mode()
def _quantized_eager_outputs(ckpt: LlamaCheckpoint, scheme: QuantScheme, eval_set: EvalSet,
                             context_len: int) -> tuple[torch.Tensor, list[list[int]]]:
    from compile.exporters.executorch import quantized_eager

    model = quantized_eager(ckpt, scheme, context_len, full_logits=True)
    logits = model(torch.tensor([eval_set.ids]))[0].float()
    runs = []
    for prompt in eval_set.prompts:  # no KV cache in this model: each step rereads the whole sequence
        seq = list(prompt)
        for _ in range(eval_set.greedy_tokens):
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
        runs.append(seq[len(prompt):])
    del model
    gc.collect()
    return logits, runs


def build_golden(ckpt: LlamaCheckpoint, scheme: QuantScheme, eval_set: EvalSet, context_len: int) -> Golden:
    full_logits, full_greedy = _full_model_outputs(ckpt, eval_set)
    q_logits, q_greedy = _quantized_eager_outputs(ckpt, scheme, eval_set, context_len)
    full = Reference.from_logits(full_logits, eval_set.ids, full_greedy)
    gap = compare_to_reference(full, q_logits, eval_set.ids)
    gap.update(greedy_summary(full_greedy, q_greedy, eval_set.greedy_tokens))
    return Golden(ids=eval_set.ids, prompt_texts=eval_set.prompt_texts, prompts=eval_set.prompts,
                  greedy_tokens=eval_set.greedy_tokens, latency_prompt_text=eval_set.latency_prompt_text,
                  latency_prompt=eval_set.latency_prompt, eval_source=eval_set.source,
                  references={"full": full, "quantized": Reference.from_logits(q_logits, eval_set.ids, q_greedy)},
                  quantization_gap=gap)
