"""The device inventory: which devices the farm may use and how to reach each, as data (TOML, typed like
target profiles). Without an inventory, the farm is this host (one `local` device).

    [[device]]
    id = "rpi5-a"                      # unique; leases and result keys use it
    target = "linux-arm64-xnnpack"     # a target profile name
    transport = "ssh"                  # local | ssh | adb
    address = "rpi5-a"                 # ssh: a Host alias of ssh_config (user, port, keys, ProxyJump stay there)
    ssh_config = "~/.ssh/config"       # optional: the ssh_config file to use (ssh -F)
    workdir = "/var/tmp/llamaport"     # bundles are cached here by sha256
    python = "/opt/venv/bin/python"    # the device's interpreter with the runtime wheel installed
    tags = ["arm64", "8gb"]
    facts = { soc = "BCM2712", ram_gb = 8, mem_bw_gb_s = 17 }
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llamaport.errors import ConfigError, unknown_id
from llamaport.targets.transports import TRANSPORTS

INVENTORY_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DeviceEntry:
    id: str
    target: str
    transport: str = "local"
    address: str = ""  # ssh: Host alias; adb: serial; local: unused
    workdir: str = ""  # default: a folder under the user's cache on the device
    python: str = "python3"
    ssh_config: str | None = None
    tags: tuple[str, ...] = ()
    facts: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.id or any(c in self.id for c in "/ \\"):
            raise ConfigError(f"'id' {self.id!r} must be a non-empty name without slashes or spaces")
        if self.transport not in TRANSPORTS:
            raise unknown_id("transport", self.transport, TRANSPORTS)
        if self.transport != "local" and not self.address:
            raise ConfigError(f"device {self.id}: transport {self.transport} needs an 'address' "
                              f"({'an ssh_config Host alias' if self.transport == 'ssh' else 'the adb serial'})")


@dataclass(frozen=True)
class Inventory:
    devices: tuple[DeviceEntry, ...]

    def device(self, device_id: str) -> DeviceEntry:
        for d in self.devices:
            if d.id == device_id:
                return d
        raise unknown_id("device", device_id, [d.id for d in self.devices])

    def for_target(self, target: str, tags: tuple[str, ...] = ()) -> tuple[DeviceEntry, ...]:
        return tuple(d for d in self.devices if d.target == target and set(tags) <= set(d.tags))


def local_inventory(target: str = "linux-x86_64-xnnpack") -> Inventory:
    """The farm without an inventory file: this host, as one local device."""
    return Inventory((DeviceEntry(id="local", target=target, transport="local"),))


def load_inventory(path: Path) -> Inventory:
    from llamaport.targets.profiles import read_toml
    from llamaport.typed import from_dict

    data = read_toml(Path(path), "inventory file", "[[device]] tables")
    extra = set(data) - {"device", "schema_version"}
    if extra:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(extra)}; expected [[device]] tables")
    if data.get("schema_version", INVENTORY_SCHEMA_VERSION) != INVENTORY_SCHEMA_VERSION:
        raise ConfigError(f"{path}: inventory schema_version {data['schema_version']!r}; this llamaport reads "
                          f"{INVENTORY_SCHEMA_VERSION}")
    entries = data.get("device", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: no [[device]] tables")
    devices = []
    for i, entry in enumerate(entries):
        name = entry.get("id") if isinstance(entry, dict) else None
        devices.append(from_dict(DeviceEntry, entry, origin=f"{path}: device #{i + 1}{f' ({name})' if isinstance(name, str) else ''}"))
    ids = [d.id for d in devices]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise ConfigError(f"{path}: device ids must be unique; repeated: {duplicated}")
    return Inventory(tuple(devices))
