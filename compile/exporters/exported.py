"""What an exporter hands back: the files it wrote for model/ (the artifact first) and its record of what
was applied and lowered (the manifest's `lowering`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llamaport.runtime_tests.manifest import Lowering


@dataclass(frozen=True)
class Exported:
    files: tuple[Path, ...]  # the artifact first, then its external data and the runtime's config files
    lowering: Lowering


def onnx_lowering(model: Path, scheme) -> Lowering:
    """What onnxruntime was asked to do, and the node types the graph ended with (MatMulNBits, GroupQueryAttention ...)."""
    import collections

    import onnx

    from llamaport.quantize.onnx_map import describe

    graph = onnx.load(str(model), load_external_data=False).graph
    counts = collections.Counter(node.op_type for node in graph.node)
    return Lowering(quantization=describe(scheme), op_counts=dict(sorted(counts.items())))
