"""One job per device, by one of two locks.

FileLease (one host): fcntl.flock on <folder>/<device_id>.lock. The kernel drops the lock when the holding
process dies, even by SIGKILL, so a crash leaves no stale lock for anyone to clean up.

StoreLease (several hosts sharing one store): a row device_leases(device_id, holder, job_key, expires_at) taken
by one compare-and-set statement and kept alive by renew_lease; a holder that dies stops renewing and its lease
expires. Expiry is judged by the database server's clock only, so hosts whose clocks disagree still agree on
who holds a device. `holder` must be unique per process (host, pid, a random part): two processes sharing a
holder name would share the lease.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Column, Double, MetaData, Table, Text, cast, delete, extract, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from llamaport.errors import ConfigError, DeviceError

DEFAULT_LOCK_FOLDER = Path("~/.cache/llamaport/locks")
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class DeviceBusy(DeviceError):
    """Another process holds the device: not the job's fault; wait, or run it on another device."""


class FileLease:
    """`with FileLease("rpi5-a"):` holds the device or raises DeviceBusy; acquire() returns False instead."""

    def __init__(self, device_id: str, folder: str | Path | None = None, grace_s: float | None = None):
        if not _SAFE_ID.fullmatch(device_id):
            raise ConfigError(f"device id {device_id!r} cannot name a lock file; use letters, digits, '.', '_', '-'")
        self.device_id = device_id
        self.grace_s = self.GRACE_S if grace_s is None else grace_s
        self.path = Path(folder or DEFAULT_LOCK_FOLDER).expanduser() / f"{device_id}.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock without waiting: True when this object holds it now, False when another one does."""
        if self._fd is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # os.open descriptors are not inherited across exec (PEP 446): an ssh child cannot keep the lock.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigError(f"cannot open lock file {self.path}: {e.strerror}; "
                              f"pick a writable lock folder") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        # The pid only makes the "busy" message useful; the lock is the flock, never the file's content.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        # The file stays: unlinking it would let one process lock the old inode while another locks a new one.
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor drops the flock

    # A lock just released can stay held for a moment by a child process another thread is starting: the
    # child inherits every descriptor at fork and drops the close-on-exec ones only at exec, and a flock lives
    # as long as any copy of its descriptor. Seen as "device busy: process <our own pid>" when a worker took
    # its device again right after its previous job, while another worker started ssh. Waiting this long covers
    # that window; a device another process really holds stays busy past it.
    GRACE_S = 5.0

    def __enter__(self) -> FileLease:
        deadline = time.monotonic() + self.grace_s
        while not self.acquire():
            if time.monotonic() >= deadline:
                raise DeviceBusy(f"device {self.device_id} is busy: {self._holder()} holds {self.path}; "
                                 f"wait for it to finish or pick another device")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _holder(self) -> str:
        try:
            pid = self.path.read_text().strip()
        except OSError:
            pid = ""
        return f"process {pid}" if pid.isdigit() else "another process"


@dataclass(frozen=True)
class LeaseRow:
    device_id: str
    holder: str
    job_key: str
    expires_at: float  # seconds since the epoch by the database server's clock
    expired: bool


def lease_table(metadata: MetaData) -> Table:
    return Table("device_leases", metadata,
                 Column("device_id", Text, primary_key=True),
                 Column("holder", Text, nullable=False),
                 Column("job_key", Text, nullable=False),
                 Column("expires_at", Double, nullable=False))


def db_now(dialect: str):
    """Seconds since the epoch by the database server's clock, as a SQL expression (one clock for all hosts)."""
    if dialect == "postgresql":
        return cast(extract("epoch", func.now()), Double)
    # unixepoch('subsec') needs SQLite 3.42 and Python 3.11 ships 3.40; julianday keeps milliseconds.
    return (func.julianday("now") - 2440587.5) * 86400.0


def dialect_insert(dialect: str):
    """The dialect's INSERT, the one with on_conflict_do_nothing / on_conflict_do_update."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


class StoreLease:
    """Device leases in the store's device_leases table; every method is one statement, so one round trip."""

    def __init__(self, engine: Engine, table: Table):
        self.engine = engine
        self.table = table
        self.dialect = engine.dialect.name

    def take_lease(self, device_id: str, holder: str, job_key: str, ttl_s: float) -> bool:
        """True when `holder` now holds the device for ttl_s seconds: the row was absent or its lease expired.
        A live lease, even one's own, is not taken again (renew_lease extends it)."""
        _check_ttl(ttl_s)
        now = db_now(self.dialect)
        ins = dialect_insert(self.dialect)(self.table).values(
            device_id=device_id, holder=holder, job_key=job_key, expires_at=now + ttl_s)
        # Compare-and-set in one statement: the UPDATE branch applies only where the old lease expired, and
        # the row count says whether it applied. PostgreSQL re-checks the WHERE on the newest row version
        # after waiting for a concurrent taker; SQLite runs one writer at a time.
        stmt = ins.on_conflict_do_update(
            index_elements=[self.table.c.device_id],
            set_={"holder": ins.excluded.holder, "job_key": ins.excluded.job_key,
                  "expires_at": ins.excluded.expires_at},
            where=self.table.c.expires_at < now)
        return self._write(stmt) == 1

    def renew_lease(self, device_id: str, holder: str, ttl_s: float) -> bool:
        """Extend holder's lease to ttl_s from now. Also after expiry when nobody took it over: every taker
        goes through the same row, so a row still naming the holder is still exclusively its own."""
        _check_ttl(ttl_s)
        t = self.table
        stmt = (update(t).where(t.c.device_id == device_id, t.c.holder == holder)
                .values(expires_at=db_now(self.dialect) + ttl_s))
        return self._write(stmt) == 1

    def release_lease(self, device_id: str, holder: str) -> bool:
        """Delete the lease only if `holder` holds it (a late release must not free someone else's lease)."""
        t = self.table
        return self._write(delete(t).where(t.c.device_id == device_id, t.c.holder == holder)) == 1

    def lease(self, device_id: str) -> LeaseRow | None:
        t = self.table
        expired = (t.c.expires_at < db_now(self.dialect)).label("expired")
        with self.engine.connect() as conn:
            row = conn.execute(select(t.c.device_id, t.c.holder, t.c.job_key, t.c.expires_at, expired)
                               .where(t.c.device_id == device_id)).mappings().first()
        return LeaseRow(**row) if row else None

    def _write(self, stmt) -> int:
        return write(self.engine, stmt)


def write(engine: Engine, stmt) -> int:
    """Run one writing statement in its own transaction; the number of rows it changed."""
    # The row count is the answer (new row? lease taken?). SQLAlchemy drops an INSERT's count with psycopg
    # (-1) unless asked to keep it; SQLite keeps it either way.
    with engine.begin() as conn:
        return conn.execute(stmt, execution_options={"preserve_rowcount": True}).rowcount


def _check_ttl(ttl_s: float) -> None:
    if not ttl_s > 0:
        raise ConfigError(f"lease time-to-live must be > 0 seconds, got {ttl_s!r}")
