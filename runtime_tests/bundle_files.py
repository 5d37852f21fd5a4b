"""Reading a bundle before a check: the manifest, every file it lists intact. No torch: a bundle's
integrity is checked before any runtime is started, on the host and again on the device."""

from __future__ import annotations

from pathlib import Path

from llamaport.errors import ConfigError
from llamaport.runtime_tests.device.main import sha256_of  # one implementation, on both sides
from llamaport.runtime_tests.manifest import GOLDEN_PATH, Manifest, read_manifest


def verify_bundle(bundle: Path) -> Manifest:
    """The manifest, after checking that every file it lists is present with its bytes and sha256."""
    manifest = read_manifest(bundle)
    for entry in manifest.files:
        f = Path(bundle) / entry.path
        if not f.is_file():
            raise ConfigError(f"{f}: listed in the manifest but missing; the bundle is incomplete")
        if f.stat().st_size != entry.bytes or sha256_of(f) != entry.sha256:
            raise ConfigError(f"{f}: differs from the manifest (bytes or sha256); the bundle was modified, rebuild it")
    if not any(e.path == GOLDEN_PATH for e in manifest.files):
        raise ConfigError(f"{bundle}: carries no golden outputs ({GOLDEN_PATH}); rebuild it with this llamaport")
    return manifest


def golden_metadata(bundle: Path) -> dict:
    """The golden outputs' JSON metadata (ids, prompts, the quantization gap), read without torch."""
    import json

    from safetensors import safe_open

    with safe_open(str(Path(bundle) / GOLDEN_PATH), framework="np") as f:
        return json.loads(f.metadata()["llamaport_golden"])
