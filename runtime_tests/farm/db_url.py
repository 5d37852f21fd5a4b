"""The results store's URL: one text for SQLite or PostgreSQL, checked before any connection, so a bad one is
one line naming it and what to do."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from llamaport.errors import ConfigError

URL_HINT = "use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DATABASE"


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise ConfigError(f"{url!r} is not a database URL; {URL_HINT}") from e
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        # A bare postgresql:// means psycopg2 to SQLAlchemy; psycopg (3) is the driver llamaport installs.
        return parsed.set(drivername="postgresql+psycopg") if parsed.drivername == "postgresql" else parsed
    if backend != "sqlite":
        raise ConfigError(f"database URL {parsed.render_as_string(hide_password=True)}: "
                          f"unsupported database {backend!r}; {URL_HINT}")
    if parsed.database in (None, "", ":memory:"):
        return parsed
    path = Path(parsed.database).expanduser()
    try:  # the default store lives under ~/.cache, which may not exist yet
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        reason = "a file is in the way" if isinstance(e, FileExistsError) else e.strerror
        raise ConfigError(f"cannot create the folder of the SQLite store {url}: {reason}; "
                          f"pick a writable file path") from e
    return parsed.set(database=str(path))
