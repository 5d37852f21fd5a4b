"""The ONNX quantized reference: the exported model with its quantized weights dequantized to fp32
(quantize.onnx_dequantize), run on onnxruntime over the eval set, as the ONNX counterpart of
ExecuTorch's quantized eager model."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from llamaport.compile.checkpoint import LlamaCheckpoint
from llamaport.compile.eval_data import EvalSet
from llamaport.quantize.schemes import QuantScheme


def dequantized_outputs(ckpt: LlamaCheckpoint, scheme: QuantScheme, eval_set: EvalSet, context_len: int,
                        artifact: Path) -> tuple[torch.Tensor, list[list[int]]]:
    from llamaport.quantize.onnx_dequantize import write_dequantized
    from llamaport.runtime_tests.device.drivers.onnxruntime_session import OrtModel
    from llamaport.runtime_tests.device.timing import greedy

    with tempfile.TemporaryDirectory(prefix="llamaport-dequantized-") as tmp:
        path = Path(tmp) / "model.onnx"
        write_dequantized(artifact, path)
        cfg = ckpt.config
        model = OrtModel(path, cfg["num_key_value_heads"], cfg["head_dim"], context_len)
        logits = torch.from_numpy(model.teacher_forced_logits(eval_set.ids))
        runs = [greedy(model, p, eval_set.greedy_tokens) for p in eval_set.prompts]
    return logits, runs
