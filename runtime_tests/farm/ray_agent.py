"""`llamaport farm agent`: the `ray start` command line of a farm host. Its node advertises one custom
resource per device (`device:<id>`: 1), which is how Ray gives one job per device and places each job on the
host that holds its device. Ray cannot change a node's resources after it starts, so adding a device
means restarting the agent. Usage statistics stay off: a farm host sends nothing out."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from llamaport.errors import ConfigError
from llamaport.runtime_tests.farm.ray_farm import device_resources


def ray_start_argv(inventory: Path, devices: tuple[str, ...], address: str | None, port: int, node_ip: str,
                   num_cpus: int, temp_dir: Path | None) -> tuple[list[str], dict]:
    from llamaport.targets.inventory import load_inventory

    found = load_inventory(inventory)
    ids = list(devices) or [d.id for d in found.devices]
    for d in ids:
        found.device(d)  # an unknown id is refused, listing the known ones
    ray = Path(sys.executable).with_name("ray")
    if not ray.is_file():
        raise ConfigError(f"{ray}: Ray's command line is missing; install llamaport's dependencies")
    argv = [str(ray), "start", "--block", "--disable-usage-stats", f"--node-ip-address={node_ip}",
            f"--num-cpus={num_cpus}", f"--resources={json.dumps(device_resources(ids))}"]
    argv += [f"--address={address}"] if address else ["--head", f"--port={port}", "--include-dashboard=false"]
    if temp_dir is not None and not address:
        argv.append(f"--temp-dir={temp_dir}")
    return argv, {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
