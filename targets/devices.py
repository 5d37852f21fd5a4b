"""Which device a check runs on: an inventory entry, or without an inventory this host (`local`), with the
interpreter that runs llamaport (it has the runtimes)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from llamaport.entry import load_entry
from llamaport.targets.inventory import DeviceEntry, load_inventory, local_inventory
from llamaport.targets.transports import TRANSPORTS


def resolve_device(name: str, inventory: Path | None = None) -> DeviceEntry:
    found = load_inventory(inventory) if inventory is not None else local_inventory()
    entry = found.device(name)
    if entry.transport == "local" and entry.python == "python3":
        entry = dataclasses.replace(entry, python=sys.executable)
    return entry


def transport_for(entry: DeviceEntry, local_root: Path | None = None):
    return load_entry(TRANSPORTS[entry.transport])(entry, local_root)
