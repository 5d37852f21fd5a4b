"""An ONNX model through plain onnxruntime (InferenceSession, numpy in and out): what an app without
onnxruntime-genai runs. It drives either layout's decoder by its input names: input_ids, attention_mask,
position_ids where the graph takes them, and past_key_values.N.key/value fed back from present.N.*."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


class OrtModel:
    name = "onnxruntime"

    def __init__(self, model_path: Path, kv_heads: int, head_dim: int, context_len: int):
        import onnxruntime as ort

        start = time.perf_counter()
        self.session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        self.load_s = time.perf_counter() - start
        inputs = [i.name for i in self.session.get_inputs()]
        self.past_names = [n for n in inputs if n.startswith("past_key_values.")]
        self.takes_positions = "position_ids" in inputs
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.present_for = {p: p.replace("past_key_values.", "present.") for p in self.past_names}
        self.empty = np.zeros((1, kv_heads, 0, head_dim), dtype=np.float32)
        self.context_len = context_len
        self.cache: dict[str, np.ndarray] = {}

    def _run(self, tokens: list[int], past_len: int) -> np.ndarray:
        if past_len + len(tokens) > self.context_len:
            raise ValueError(f"{past_len + len(tokens)} tokens exceed the bundle's context of {self.context_len}")
        n = len(tokens)
        feeds = {"input_ids": np.array([tokens], dtype=np.int64),
                 "attention_mask": np.ones((1, past_len + n), dtype=np.int64)}
        if self.takes_positions:
            feeds["position_ids"] = np.arange(past_len, past_len + n, dtype=np.int64)[None]
        for name in self.past_names:
            feeds[name] = self.cache.get(name, self.empty) if past_len else self.empty
        outputs = dict(zip(self.output_names, self.session.run(None, feeds)))
        self.cache = {name: outputs[present] for name, present in self.present_for.items()}
        return outputs["logits"][0]

    def prefill(self, tokens: list[int]) -> np.ndarray:
        return self._run(tokens, 0)[-1].copy()

    def decode(self, token: int, pos: int) -> np.ndarray:
        return self._run([token], pos)[-1].copy()

    def teacher_forced_logits(self, ids: list[int]) -> np.ndarray:
        return self._run(ids, 0).copy()


def load(bundle: Path, job: dict) -> OrtModel:
    return OrtModel(Path(bundle) / job["model"], job["num_key_value_heads"], job["head_dim"], job["context_len"])
