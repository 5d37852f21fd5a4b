"""Devices a bundle is checked on, and how a command reaches them. `local` runs the device process on
this host with the same interpreter; remote transports (ssh boards, adb phones) plug in here."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

from llamaport.errors import DeviceError, unknown_id


@dataclass(frozen=True)
class LocalDevice:
    name: str = "local"
    transport: str = "subprocess"

    def python_module(self, module: str, args: list[str], timeout_s: float) -> subprocess.CompletedProcess:
        """Run `python -m module args...` on the device; stdout and stderr come back as text."""
        argv = [sys.executable, "-m", module, *args]
        try:
            # A runtime may print raw byte-level token pieces; they must not break reading the result line.
            return subprocess.run(argv, capture_output=True, encoding="utf-8", errors="replace", timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            raise DeviceError(f"device {self.name}: `{' '.join(argv)}` ran past {timeout_s:.0f} s") from e


DEVICES = {"local": LocalDevice()}


def resolve_device(name: str):
    if name not in DEVICES:
        raise unknown_id("device", name, DEVICES)
    return DEVICES[name]
