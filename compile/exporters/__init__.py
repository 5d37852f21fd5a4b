"""Exporter id -> function, and each exporter's quantized reference. Explicit; imported lazily so
`--dry-run` needs no ExecuTorch or onnxruntime import.

An exporter takes (checkpoint, scheme, context length, work folder) and returns the files it wrote
for the bundle; ARTIFACT_NAMES names the model file among them."""

from __future__ import annotations


def _executorch(ckpt, scheme, context_len, work):
    from compile.exporters.executorch import export_executorch
    return [export_executorch(ckpt, scheme, context_len, work)]


def _ort_genai(*args):
    from compile.exporters.onnx_genai import export_ort_genai
    return export_ort_genai(*args)


def _optimum_onnx(*args):
    from compile.exporters.onnx_optimum import export_optimum_onnx
    return export_optimum_onnx(*args)


def _quantized_eager(*args):
    from compile.golden_build import quantized_eager_outputs
    return quantized_eager_outputs(*args)


def _dequantized_onnx(*args):
    from compile.exporters.onnx_reference import dequantized_outputs
    return dequantized_outputs(*args)


EXPORTERS = {"executorch": _executorch, "ort-genai": _ort_genai, "optimum-onnx": _optimum_onnx}
ARTIFACT_NAMES = {"executorch": "model.pte", "ort-genai": "model.onnx", "optimum-onnx": "model.onnx"}
# (checkpoint, scheme, eval set, context length, artifact path) -> (teacher-forced logits, greedy runs)
QUANTIZED_REFERENCES = {"executorch": _quantized_eager, "ort-genai": _dequantized_onnx,
                        "optimum-onnx": _dequantized_onnx}
