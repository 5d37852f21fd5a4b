"""Frozen dataclasses to and from plain dicts (JSON, TOML), checked against their annotations.

The one converter behind every data file llamaport reads (targets, inventories, manifests, reports), so a
wrong type is refused the same way everywhere: with the file, the entry and the field path. Stdlib only,
because the device side reads manifests with nothing but a runtime installed.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Union

from llamaport.errors import ConfigError

_NONE = type(None)


@lru_cache(maxsize=None)
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(tp, value, path: str):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and _NONE in args:
            return None
        errors = []
        for option in (a for a in args if a is not _NONE):
            try:
                return _convert(option, value, path)
            except _Mismatch as e:
                errors.append(e)
        raise errors[0] if len(errors) == 1 else _Mismatch(path, tp, value)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _Mismatch(path, tp, value, "a table")
        return _build(tp, value, path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch(path, tp, value, "a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise _Mismatch(path, tp, value, f"a list of {len(args)}")
        return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch(path, tp, value, "a list")
        return [_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise _Mismatch(path, tp, value, "a table")
        if not args:
            return dict(value)
        return {_convert(args[0], k, path): _convert(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        if value not in args:
            raise _Mismatch(path, tp, value, f"one of {list(args)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Mismatch(path, tp, value, "a number")
        return float(value)
    if tp is int or tp is str or tp is bool:
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise _Mismatch(path, tp, value)
        return value
    if tp is _NONE:
        if value is not None:
            raise _Mismatch(path, tp, value, "nothing (null)")
        return None
    raise TypeError(f"typed: no converter for {tp!r} at {path}")  # a bug in a dataclass, not user input


class _Mismatch(Exception):
    def __init__(self, path: str, tp, value, expected: str | None = None):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        super().__init__(f"field '{path}' must be {expected or _describe(tp)}, got {shown}")


def _build(cls, data: dict, path: str):
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise _Unknown(f"{path + ': ' if path else ''}unknown keys {unknown}; allowed: {sorted(fields)}")
    missing = sorted(n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if missing:
        raise _Unknown(f"{path + ': ' if path else ''}missing keys {missing}")
    kwargs = {name: _convert(hints[name], value, f"{path}.{name}" if path else name) for name, value in data.items()}
    return cls(**kwargs)


class _Unknown(Exception):
    pass


def from_dict(cls, data, origin: str):
    """`cls` built from `data`, every field checked against its annotation. Errors are one ConfigError
    naming `origin` (the file and entry) and the field path. Dataclasses' own __post_init__ checks run too."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: must be a table of fields, got {type(data).__name__}")
    try:
        return _build(cls, data, "")
    except (_Mismatch, _Unknown) as e:
        raise ConfigError(f"{origin}: {e}") from None
    except ConfigError as e:
        raise ConfigError(f"{origin}: {e}") from None


def to_dict(obj) -> dict:
    """Plain dict of a dataclass (tuples become lists, as JSON and TOML hold them)."""
    def plain(v):
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(obj)


def check_schema(d, version: int, origin: str, what: str, advice: str) -> None:
    """A file of another schema version is refused with one line saying which version this llamaport reads."""
    if not isinstance(d, dict):
        raise ConfigError(f"{origin}: not a {what} file (a JSON object was expected)")
    found = d.get("schema_version")
    if found != version:
        raise ConfigError(f"{origin}: {what} schema_version {found!r}; this llamaport reads {what} schema "
                          f"{version}: {advice}")


class Versioned:
    """A top-level record stored as JSON (manifest, report, comparison, sweep): its schema_version is checked
    before any field is read, then every field is type-checked."""

    SCHEMA_VERSION: ClassVar[int]
    KIND: ClassVar[str]  # what the one-line refusal calls the file
    ADVICE: ClassVar[str]  # what to do with a file of another version

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, d, origin: str):
        check_schema(d, cls.SCHEMA_VERSION, origin, cls.KIND, cls.ADVICE)
        return from_dict(cls, d, origin)

    @classmethod
    def read(cls, path: Path):
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: cannot read the {cls.KIND} file ({e}); {cls.ADVICE}") from e
        return cls.from_dict(data, origin=str(path))

    def write(self, path: Path) -> Path:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return Path(path)
