"""What an exporter hands back: the files it wrote for model/ (the artifact first) and its record of what
was applied and lowered (the manifest's `lowering`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llamaport.runtime_tests.manifest import Lowering


@dataclass(frozen=True)
class ExportInputs:
    """What an exporter may need beyond the checkpoint and scheme: the target (an NPU's configuration),
    the eval set (exporters that compute their own quantized reference) and a static recipe's calibration."""

    target: object  # llamaport.targets.Target
    eval_set: object  # llamaport.compile.eval_data.EvalSet
    calibration: object = None  # llamaport.compile.calibration.CalibrationSet
    plan: object = None  # llamaport.quantize.plan.QuantPlan of a calibrated CPU recipe (GPTQ grids, 8-bit units)


@dataclass(frozen=True)
class Exported:
    files: tuple[Path, ...]  # the artifact first, then its external data and the runtime's config files
    lowering: Lowering
    check_files: tuple[Path, ...] = ()  # into the bundle's check/ folder: what a runner needs beside model/
    # (teacher-forced logits, greedy runs) of the quantized reference, when the exporter computed them
    # itself (a calibrated graph exists only inside the export)
    quantized_outputs: tuple | None = None
    # or a way to compute them from what the export kept (its quantized eager model), given the eval set: the
    # quantized_reference stage calls it, and the exporter's model goes with it
    quantized_reference: Callable[[object], tuple] | None = None
    rope_layout: str | None = None  # when the exporter did not keep Meta's interleaved q/k layout


def onnx_lowering(model: Path, scheme) -> Lowering:
    """What onnxruntime was asked to do, and the node types the graph ended with (MatMulNBits, GroupQueryAttention ...)."""
    import collections

    import onnx

    from llamaport.quantize.onnx_map import describe

    graph = onnx.load(str(model), load_external_data=False).graph
    counts = collections.Counter(node.op_type for node in graph.node)
    return Lowering(quantization=describe(scheme), op_counts=dict(sorted(counts.items())))
