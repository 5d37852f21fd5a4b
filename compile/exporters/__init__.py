"""Exporter id -> function. Explicit; imported lazily so `--dry-run` needs no ExecuTorch import."""

from __future__ import annotations


def _executorch(*args, **kwargs):
    from compile.exporters.executorch import export_executorch
    return export_executorch(*args, **kwargs)


EXPORTERS = {"executorch": _executorch}
ARTIFACT_NAMES = {"executorch": "model.pte"}
