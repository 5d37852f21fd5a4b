"""Writing the bundle folder: file entries with sha256, package versions, JSON, and the rename into place.
The bundle is staged in a temporary folder beside its destination (llamaport.compile.stages.checkpoint)
and renamed only when complete, so nothing half-written is ever left."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from llamaport.errors import ConfigError
from llamaport.runtime_tests.bundle_files import sha256_of
from llamaport.runtime_tests.manifest import FileEntry

VERSIONED_PACKAGES = ("llamaport", "torch", "executorch", "torchao", "transformers", "onnx", "onnxruntime",
                      "onnxruntime-genai", "optimum", "optimum-onnx")


def file_entry(path: Path, root: Path | None = None) -> FileEntry:
    return FileEntry(path=str(path.relative_to(root) if root else path), bytes=path.stat().st_size, sha256=sha256_of(path))


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _readable_by_all(folder: Path) -> None:
    """mkdtemp makes 0700 folders (and some writers 0600 files); a shipped bundle gets the usual modes."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for p in folder.rglob("*"):
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def publish(staging: Path, dest: Path, overwrite: bool) -> Path:
    """Rename the finished staging folder to `dest` (replacing an earlier one only with `overwrite`)."""
    dest = Path(dest)
    if dest.exists():
        if not overwrite:
            raise ConfigError(f"{dest}: already exists; choose another --out or pass --overwrite")
        shutil.rmtree(dest)
    _readable_by_all(staging)
    os.replace(staging, dest)
    return dest


@contextlib.contextmanager
def staging_folder(dest: Path, overwrite: bool):
    """Yield a temporary folder next to `dest`; on success it replaces `dest`, on any error it is removed.
    For outputs made in one step (reports); builds stage through their own pipeline stages."""
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise ConfigError(f"{dest}: already exists; choose another --out or pass --overwrite")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        yield tmp
        publish(tmp, dest, overwrite=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
