"""What a device is, as data. Imports no torch, so listing targets answers in milliseconds."""

from llamaport.targets.profiles import BUILTIN_TARGETS, Gate, Target, load_targets, resolve_target

__all__ = ["BUILTIN_TARGETS", "Gate", "Target", "load_targets", "resolve_target"]
