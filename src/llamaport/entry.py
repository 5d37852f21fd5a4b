"""Dotted entry points ("package.module:function"), resolved on first use. Capability tables name their
code this way, so reading a table imports nothing heavy (no torch, no runtime)."""

from __future__ import annotations

import importlib


def load_entry(dotted: str):
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)
