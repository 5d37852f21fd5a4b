"""Paths given on the command line, checked before anything is read or built: one line naming the option,
the path and what to do, instead of an OSError deep inside a stage (or a half-written folder)."""

from __future__ import annotations

import os
from pathlib import Path

from llamaport.errors import ConfigError


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def output_folder(path: Path, option: str, source: Path | None = None) -> Path:
    """A folder a command will create (or replace): every name within the file system's limit, not a file,
    under a folder that exists somewhere up the path, is a folder, and can be written; and neither the
    `source` it is made from, nor inside it, nor holding it (replacing it would delete the source)."""
    path = Path(path)
    limit = _name_max(Path("/"))  # before any stat: a stat of a name over the limit is an OSError itself
    for part in path.absolute().parts:
        if len(os.fsencode(part)) > limit:
            raise ConfigError(f"{option} {path}: the name {part[:24]}… is {len(os.fsencode(part))} bytes, longer than "
                              f"the file system allows ({limit}); choose a shorter name")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: is a file; {option} names a folder to create")
    if source is not None and source.exists():
        out, src = path.resolve(), Path(source).resolve()
        if out == src or src.is_relative_to(out) or out.is_relative_to(src):
            where = "is" if out == src else "holds" if src.is_relative_to(out) else "is inside"
            raise ConfigError(f"{option} {path}: {where} the model {source}; write the output somewhere else")
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"{option} {path}: {ancestor} is a file, not a folder; choose an --out under a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: {ancestor} is not writable; choose an {option} you can write to")
    return path


def input_file(path: Path, option: str, what: str) -> Path:
    """A file a command reads: present, a file (not a folder), readable."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{option} {path}: no such file; pass {what}")
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; pass {what}")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{option} {path}: not readable (permission denied); pass {what} you can read")
    return path
