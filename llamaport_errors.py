"""The one error hierarchy. Each class carries the CLI exit code it maps to (only compile/cli.py exits)."""

from __future__ import annotations


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

    def __init__(self, message: str, failures: list[dict]):
        super().__init__(message)
        self.failures = failures


class DeviceError(LlamaportError):
    exit_code = 1


def unknown_id(kind: str, given: str, known) -> ConfigError:
    """An unknown id always lists the known ones."""
    return ConfigError(f"unknown {kind} {given!r}; known: {', '.join(sorted(known))}")
