"""Golden outputs at build time: the full model and the recipe's quantized reference score the eval set;
their outputs (not the models) go into the bundle. Full vs quantized reference is the quantization gap.

The quantized reference is each exporter's own (its `quantized_reference` in llamaport.quantize.exporters): ExecuTorch's
Llama with the torchao scheme in eager, or for ONNX the bundle's weights dequantized, in fp32 on
onnxruntime. Both are (teacher-forced logits, greedy tokens per prompt) on the same eval set."""

from __future__ import annotations

import gc

import torch

from llamaport.compile.checkpoint import LlamaCheckpoint
from llamaport.compile.eval_data import EvalSet
from llamaport.quantize.schemes import QuantScheme
from llamaport.runtime_tests.golden import QUANTIZED_LOGITS_MAX_BYTES, Golden, Reference
from llamaport.runtime_tests.metrics import compare_to_reference, greedy_summary


def full_reference(ckpt: LlamaCheckpoint, eval_set: EvalSet) -> Reference:
    from llamaport.compile.reference import full_model, greedy_tokens, teacher_forced_logits

    model = full_model(ckpt)
    logits = torch.cat([teacher_forced_logits(model, w) for w in eval_set.windows()])
    greedy = [greedy_tokens(model, p, eval_set.greedy_tokens) for p in eval_set.prompts]
    del model
    gc.collect()
    return Reference.from_logits(logits, eval_set.ids, greedy)


@torch.inference_mode()
def quantized_eager_outputs(ckpt: LlamaCheckpoint, scheme: QuantScheme, eval_set: EvalSet, context_len: int,
                            artifact=None, plan=None) -> tuple[torch.Tensor, list[list[int]]]:
    """ExecuTorch's Llama with the scheme (and a calibrated plan) applied by torchao, in eager (the artifact
    is not needed), its weights dequantized once (quantize.dequantized_once: the same numbers) and its KV
    cache on: one teacher-forced pass per window, then greedy runs one token a step, as the full reference."""
    from llamaport.compile.exporters.executorch import quantized_eager
    from llamaport.quantize.dequantized_once import dequantize_once_

    model = dequantize_once_(quantized_eager(ckpt, scheme, context_len, full_logits=True, plan=plan, kv_cache=True))
    outputs = eager_outputs(model, eval_set)
    del model
    gc.collect()
    return outputs


def eager_outputs(model, eval_set: EvalSet) -> tuple[torch.Tensor, list[list[int]]]:
    """ExecuTorch's eager Llama (KV cache on, every position's logits) on the eval set: one teacher-forced
    pass per window, then each prompt's greedy run one token a step."""
    from llamaport.runtime_tests.device.native_logs import native_stderr_quiet

    # ExecuTorch 1.5.1's quantized SDPA kernel logs "No temp allocator" per call in eager: quiet until it stops
    with native_stderr_quiet():
        logits = torch.cat([_forward(model, w, 0)[0].float() for w in eval_set.windows()])
        runs = [_cached_greedy(model, p, eval_set.greedy_tokens) for p in eval_set.prompts]
    return logits, runs


def _forward(model, tokens: list[int], start: int) -> torch.Tensor:
    return model(torch.tensor([tokens]), {"input_pos": torch.tensor([start])})


def _cached_greedy(model, prompt: list[int], new_tokens: int) -> list[int]:
    """Exactly `new_tokens` argmax tokens; each prompt starts at position 0, over whatever an earlier
    sequence left in the cache (attention reads only positions up to the current one)."""
    logits, tokens = _forward(model, prompt, 0), []
    for step in range(new_tokens):
        tokens.append(int(logits[0, -1].argmax()))
        logits = _forward(model, tokens[-1:], len(prompt) + step)
    return tokens


def assemble_golden(eval_set: EvalSet, full: Reference, q_logits: torch.Tensor, q_greedy: list[list[int]]) -> Golden:
    gap = compare_to_reference(full, q_logits, eval_set.ids)
    gap.update(greedy_summary(full.greedy, q_greedy, eval_set.greedy_tokens))
    return Golden(ids=eval_set.ids, prompt_texts=eval_set.prompt_texts, prompts=eval_set.prompts,
                  greedy_tokens=eval_set.greedy_tokens, latency_prompt_text=eval_set.latency_prompt_text,
                  latency_prompt=eval_set.latency_prompt, eval_source=eval_set.source,
                  references={"full": full, "quantized": Reference.from_logits(
                      q_logits, eval_set.ids, q_greedy, max_full_bytes=QUANTIZED_LOGITS_MAX_BYTES)},
                  quantization_gap=gap)
