"""The one error hierarchy. Each class carries the CLI exit code it maps to (only llamaport.cli exits):
0 ok, 1 a stage failed, 2 bad input, 3 a gate was not met, 4 a device could not run the check."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class LlamaportError(Exception):
    exit_code = 1


class ConfigError(LlamaportError):
    """Bad input from the user: a file, a field, an id. Nothing was written."""

    exit_code = 2


class StageError(LlamaportError):
    """A pipeline stage failed on input that looked valid."""

    exit_code = 1

    def __init__(self, stage: str, message: str):
        super().__init__(f"{stage}: {message}")
        self.stage = stage


class CheckFailed(LlamaportError):
    """The artifact was built but misses a gate; `failures` lists which and by how much."""

    exit_code = 3

    def __init__(self, message: str, failures: list):
        super().__init__(message)
        self.failures = failures


class JobError(LlamaportError):
    """The device ran the job and it failed on this bundle (a modified file, the runtime's error on its
    model): another device would fail the same way, so it is stored and never retried."""

    exit_code = 1


class DeviceError(LlamaportError):
    """The device could not run the check (unreachable, timed out, runtime crashed): not the bundle's fault,
    so CI can tell it from a failed build."""

    exit_code = 4


def unknown_id(kind: str, given: str, known: Iterable[str], valid: Iterable[str] | None = None,
               valid_for: str = "") -> ConfigError:
    """An unknown id names the close matches, then the ids that would be accepted here: `valid` (those
    that fit what is already resolved, e.g. the target) where given, else all known ids."""
    known = sorted(known)
    close = difflib.get_close_matches(given, known, n=3, cutoff=0.6)
    listed = sorted(valid) if valid is not None else known
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    where = f" for {valid_for}" if valid_for else ""
    return ConfigError(f"unknown {kind} {given!r}{hint}; valid{where}: {', '.join(listed)}")
