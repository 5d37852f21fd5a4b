"""Reading a bundle on the host before a check: the manifest, every file it lists intact, the golden
outputs' metadata. No torch: a bundle's integrity is checked before any runtime is started."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from llamaport_errors import ConfigError

MANIFEST = "manifest.json"
MANIFEST_SCHEMA_VERSION = 1


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_bundle(bundle: Path) -> dict:
    """The manifest, after checking that every file it lists is present with its bytes and sha256."""
    path = Path(bundle) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{bundle}: not a bundle ({MANIFEST} missing); build one with `llamaport build`")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from e
    if manifest.get("schema_version") != MANIFEST_SCHEMA_VERSION:
        raise ConfigError(f"{path}: schema_version {manifest.get('schema_version')}; this llamaport reads "
                          f"{MANIFEST_SCHEMA_VERSION}, rebuild the bundle")
    for entry in manifest["files"]:
        f = Path(bundle) / entry["path"]
        if not f.is_file():
            raise ConfigError(f"{f}: listed in the manifest but missing; the bundle is incomplete")
        if f.stat().st_size != entry["bytes"] or sha256_of(f) != entry["sha256"]:
            raise ConfigError(f"{f}: differs from the manifest (bytes or sha256); the bundle was modified, rebuild it")
    if not any(e["path"] == "golden.safetensors" for e in manifest["files"]):
        raise ConfigError(f"{bundle}: carries no golden outputs (golden.safetensors); rebuild it with this llamaport")
    return manifest


def golden_metadata(bundle: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(Path(bundle) / "golden.safetensors"), framework="np") as f:
        return json.loads(f.metadata()["llamaport_golden"])
