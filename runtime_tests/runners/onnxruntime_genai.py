"""A bundle through onnxruntime-genai (the runtime behind its Java, Objective-C, C# and C APIs): og.Model
on the bundle folder as it is, a Generator per sequence, the model's logits after each append_tokens.
Its tokenizer adds no BOS, so token ids (BOS first) come from the golden outputs, never from text."""

from __future__ import annotations

import time
from pathlib import Path

import torch


class GenaiModel:
    name = "onnxruntime-genai"

    def __init__(self, folder: Path, context_len: int):
        import onnxruntime_genai as og

        self.og = og
        start = time.perf_counter()
        self.model = og.Model(str(folder))
        self.load_s = time.perf_counter() - start
        self.context_len = context_len
        self.generator = None

    def _fresh(self):
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(max_length=self.context_len, do_sample=False)
        self.generator = self.og.Generator(self.model, params)
        return self.generator

    def _logits(self) -> torch.Tensor:
        return torch.from_numpy(self.generator.get_output("logits")[0].copy())  # [tokens appended, vocab]

    def prefill(self, tokens: list[int]) -> torch.Tensor:
        self._fresh().append_tokens(tokens)
        return self._logits()[-1]

    def decode(self, token: int, pos: int) -> torch.Tensor:
        if pos >= self.context_len:
            raise ValueError(f"position {pos} is past the bundle's context of {self.context_len}")
        self.generator.append_tokens([token])
        return self._logits()[-1]

    def teacher_forced_logits(self, ids: list[int]) -> torch.Tensor:
        self._fresh().append_tokens(ids)
        return self._logits()


def step_model(bundle: Path, runtime, model) -> GenaiModel:
    return GenaiModel((Path(bundle) / runtime.model).parent, model.context_len)


def run(bundle: Path, manifest, golden, protocol, with_accuracy: bool) -> dict:
    from llamaport.runtime_tests.accuracy import accuracy_of
    from llamaport.runtime_tests.latency import measure

    model = step_model(bundle, manifest.runtime, manifest.model)
    accuracy = accuracy_of(model, golden) if with_accuracy else None
    return {"load_s": model.load_s, "latency": measure(model, golden.latency_prompt, protocol), "accuracy": accuracy}
