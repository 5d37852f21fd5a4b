"""A bundle's model/ folder through onnxruntime-genai (the runtime behind its Java, Objective-C, C# and C
APIs): og.Model as it is, a Generator per sequence, the model's logits after each append_tokens."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


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

    def _logits(self) -> np.ndarray:
        return np.array(self.generator.get_output("logits")[0], copy=True)  # [tokens appended, vocab]

    def prefill(self, tokens: list[int]) -> np.ndarray:
        self._fresh().append_tokens(tokens)
        return self._logits()[-1]

    def decode(self, token: int, pos: int) -> np.ndarray:
        if pos >= self.context_len:
            raise ValueError(f"position {pos} is past the bundle's context of {self.context_len}")
        self.generator.append_tokens([token])
        return self._logits()[-1]

    def teacher_forced_logits(self, ids: list[int]) -> np.ndarray:
        self._fresh().append_tokens(ids)
        return self._logits()


def load(bundle: Path, job: dict) -> GenaiModel:
    return GenaiModel((Path(bundle) / job["model"]).parent, job["context_len"])
