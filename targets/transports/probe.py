"""The probe every transport runs: one `python -c` snippet on the device that prints its facts as one tagged
JSON line. It uses only the standard library of the device's interpreter (Python 3.8 or newer), because the
probe must work before anything of llamaport is on the device."""

from __future__ import annotations

import json

from llamaport.targets.transports.base import InfraError, RunResult, last_line

PROBE_TAG = "LLAMAPORT_PROBE "

# argv[1] is the workdir: created here so that its free space can be measured before the first bundle.
PROBE_SNIPPET = r"""
import glob, json, os, shutil, sys
try:
    from importlib import metadata
except ImportError:
    metadata = None
def version(*names):
    for name in names:
        try:
            return metadata.version(name)
        except Exception:
            pass
    return None
def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None
workdir = sys.argv[1]
os.makedirs(workdir, exist_ok=True)
facts = {
    "python": "%d.%d.%d" % sys.version_info[:3],
    "machine": os.uname().machine,
    "executorch": version("executorch"),
    "onnxruntime_genai": version("onnxruntime-genai", "onnxruntime_genai", "onnxruntime-genai-cuda"),
    "onnxruntime": version("onnxruntime", "onnxruntime-gpu"),
    "workdir": os.path.abspath(workdir),
    "free_disk_bytes": shutil.disk_usage(workdir).free,
    "thermal_millicelsius": {},
    "cpu_governor": read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
}
for path in sorted(glob.glob("/sys/class/thermal/thermal_zone*/temp")):
    value = read(path)
    if value and value.lstrip("-").isdigit():
        facts["thermal_millicelsius"][path.split("/")[-2]] = int(value)
print("LLAMAPORT_PROBE " + json.dumps(facts))
""".strip()


def probe_argv(python: str, workdir: str) -> list[str]:
    return [python, "-c", PROBE_SNIPPET, workdir]


def parse_probe(device_id: str, python: str, result: RunResult) -> dict:
    """The facts from the tagged line; a probe that printed none means the device's Python is unusable, which
    makes the device unusable for the farm (InfraError: the job goes elsewhere, the device is looked at)."""
    for line in result.stdout.splitlines():
        if line.startswith(PROBE_TAG):
            return json.loads(line[len(PROBE_TAG):])
    raise InfraError(f"device {device_id}: the probe with `{python}` exited {result.returncode} without facts "
                     f"({last_line(result.stderr)}); check the device's `python` setting in the inventory")
