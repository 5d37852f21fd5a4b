"""Reading a bundle before a check: the manifest, every file it lists intact. No torch: a bundle's
integrity is checked before any runtime is started, on the host and again on the device."""

from __future__ import annotations

from pathlib import Path

from llamaport.errors import ConfigError
from llamaport.runtime_tests.device.main import sha256_of  # one implementation, on both sides
from llamaport.runtime_tests.manifest import GOLDEN_PATH, Manifest, read_manifest


RUNTIMES = {"executorch": ("executorch-pte",), "onnxruntime": ("onnxruntime-genai", "huggingface-onnx")}
RUNTIME_PATHS = ("model", "tokenizer", "app_config", "tokenizer_config", "generation_config", "chat_template")


def _inside(path: str) -> bool:
    """A manifest path names a file inside the bundle: relative, with no `..`."""
    p = Path(path)
    return bool(path) and not p.is_absolute() and ".." not in p.parts


def _check_runtime_entry(manifest: Manifest, where: Path) -> None:
    """The runtime the manifest names is one llamaport checks, and every file it points an app or a runner at is
    one of the listed (and so verified) files: a hand-edited path must not reach outside the bundle."""
    from llamaport.runtime_tests.device.drivers import DRIVERS

    rt = manifest.runtime
    if rt.runtime not in RUNTIMES or rt.layout not in RUNTIMES[rt.runtime]:
        known = ", ".join(f"{r} ({' or '.join(layouts)})" for r, layouts in RUNTIMES.items())
        raise ConfigError(f"{where}: runtime {rt.runtime!r} with layout {rt.layout!r} is not one llamaport checks "
                          f"(known: {known}); rebuild the bundle")
    unknown = [r for r in rt.runners if r not in DRIVERS]  # none at all: a bundle no runner here runs (CoreML)
    if unknown:
        raise ConfigError(f"{where}: runtime.runners {list(rt.runners)} must name known runners ({', '.join(DRIVERS)})")
    listed = {e.path for e in manifest.files}
    named = [(f"runtime.{k}", getattr(rt, k)) for k in RUNTIME_PATHS if getattr(rt, k) is not None]
    named += [(f"runtime.artifact_files[{i}]", p) for i, p in enumerate(rt.artifact_files)]
    for field_name, path in named:
        if path not in listed:
            raise ConfigError(f"{where}: {field_name} {path!r} is not one of the files the manifest lists; the "
                              "manifest was edited, rebuild the bundle")


def verify_bundle(bundle: Path) -> Manifest:
    """The manifest, after checking that every file it lists is present with its bytes and sha256, and that what
    it names for the runtime is among them."""
    manifest = read_manifest(bundle)
    where = Path(bundle) / "manifest.json"
    for i, entry in enumerate(manifest.files):
        if not _inside(entry.path):
            raise ConfigError(f"{where}: files[{i}].path {entry.path!r} is outside the bundle; rebuild the bundle")
    _check_runtime_entry(manifest, where)
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
