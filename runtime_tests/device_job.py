"""What the host hands the device: the job file the device runner reads (which runner, which files with
which sha256, what to measure), written from the typed manifest, so the device reads no manifest itself;
and the device runner as one file, Python's zipapp of llamaport.runtime_tests.device."""

from __future__ import annotations

import hashlib
import importlib
import zipfile
from pathlib import Path

from llamaport.runtime_tests.manifest import GOLDEN_PATH, MANIFEST, Manifest

DEVICE_PACKAGE = Path(__file__).parent / "device"
ZIP_PACKAGE = "llamaport_device"  # the device package's name inside the zip


# Runners that run a simulator of the target's hardware on this host, with the toolchain it comes in.
SIMULATOR_TOOLCHAINS = {"tosa-reference-model": "arm-ethos-u"}


def job_fields(runtime, model, runner: str | None = None) -> dict:
    """The manifest's facts a runtime driver needs to load a bundle's model (and a simulator's toolchain,
    created on first use)."""
    fields = {"model": runtime.model, "tokenizer": runtime.tokenizer, "context_len": model.context_len,
              "num_key_value_heads": model.num_key_value_heads, "head_dim": model.head_dim}
    if runner in SIMULATOR_TOOLCHAINS:
        from llamaport.targets.toolchains import announce, ensure_toolchain

        fields["toolchain"] = str(ensure_toolchain(SIMULATOR_TOOLCHAINS[runner], progress=announce))
    return fields


def device_job(manifest: Manifest, manifest_sha256: str, bundle_on_device: str, runner: str, protocol,
               accuracy: bool = True) -> dict:
    return {"runner": runner, "bundle": bundle_on_device, "manifest_sha256": manifest_sha256,
            "files": [{"path": f.path, "bytes": f.bytes, "sha256": f.sha256} for f in manifest.files],
            "golden": GOLDEN_PATH, "manifest": MANIFEST, **job_fields(manifest.runtime, manifest.model, runner),
            "protocol": protocol.to_dict(), "accuracy": accuracy}


def load_model(runner: str, bundle: Path, runtime, model):
    """The runner's model object on this host (the build's own gate, `generate`): the device's own driver."""
    from llamaport.runtime_tests.device.drivers import DRIVERS

    driver = importlib.import_module(f"llamaport.runtime_tests.device.drivers.{DRIVERS[runner]}")
    return driver.load(Path(bundle), job_fields(runtime, model, runner))


def _sources() -> list[Path]:
    return sorted(p for p in DEVICE_PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def device_runner_digest() -> str:
    h = hashlib.sha256()
    for path in _sources():
        h.update(str(path.relative_to(DEVICE_PACKAGE)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def build_device_runner(folder: Path) -> Path:
    """device_runner-<digest>.pyz in `folder` (made once per content): runs with `python FILE JOB --out DIR`."""
    target = Path(folder) / f"device_runner-{device_runner_digest()}.pyz"
    if target.is_file():
        return target
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("__main__.py", (2020, 1, 1, 0, 0, 0)),
                   f"import sys\nfrom {ZIP_PACKAGE}.main import main\nsys.exit(main())\n")
        for path in _sources():
            info = zipfile.ZipInfo(f"{ZIP_PACKAGE}/{path.relative_to(DEVICE_PACKAGE)}", (2020, 1, 1, 0, 0, 0))
            z.writestr(info, path.read_bytes())
    partial.replace(target)
    return target
