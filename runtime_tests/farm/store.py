"""The farm's results store: runs, devices and their health, bundles, every attempt, one result per job key,
and device leases, in one database named by one URL: `sqlite:///PATH` on one host (the default),
`postgresql+psycopg://USER@HOST:PORT/DB` for a farm shared by several hosts.

SQLAlchemy Core with the dialects' INSERT ... ON CONFLICT, the same statements on SQLite 3.40 and PostgreSQL 15.
Results are written once per job key (a retried or late-delivered duplicate changes nothing); attempts are
written for every try, failed or not. Every time column is seconds since the epoch by the database server's
clock (leases.db_now), so rows written by hosts whose clocks disagree still sort in the order the store saw.
"""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import dataclass, fields
from functools import partial
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, CheckConstraint, Column, Double, Index, Integer, MetaData,
                        Table, Text, create_engine, select, update)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError

from llamaport.errors import ConfigError, unknown_id
from llamaport.runtime_tests.farm import DEFAULT_STORE_URL  # noqa: F401  (re-exported)
from llamaport.runtime_tests.farm.db_url import URL_HINT, parse_url
from llamaport.runtime_tests.farm.leases import StoreLease, db_now, dialect_insert, lease_table, write

OUTCOMES = ("ok", "job_error", "infra_error", "timeout", "lost")
HEALTH = ("good", "unknown", "bad", "retired")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _texts(*names: str) -> list[Column]:
    return [Column(name, Text, nullable=False) for name in names]


_Json = partial(JSON, none_as_null=True)  # Python None is SQL NULL, not the JSON text 'null'
METADATA = MetaData()
RUNS = Table("runs", METADATA, Column("run_id", Text, primary_key=True), Column("created", Double, nullable=False),
             Column("spec", _Json(), nullable=False), *_texts("host", "status"))
DEVICES = Table("devices", METADATA, Column("device_id", Text, primary_key=True), *_texts("target", "transport"),
                Column("facts", _Json(), nullable=False),
                *_texts("health", "health_reason"),  # health is apart from busy/idle, which is the lease
                Column("updated", Double, nullable=False),
                CheckConstraint(_one_of("health", HEALTH), name="devices_health"))
BUNDLES = Table("bundles", METADATA, Column("sha256", Text, primary_key=True), *_texts("recipe", "model", "target"),
                Column("bytes", BigInteger, nullable=False), Column("manifest", _Json(), nullable=False))
ATTEMPTS = Table("attempts", METADATA, Column("id", Integer, primary_key=True, autoincrement=True),
                 *_texts("job_key", "run_id", "device_id", "node", "detail", "raw_line"),
                 Column("attempt", Integer, nullable=False),
                 Column("started", Double, nullable=False), Column("ended", Double),
                 Column("outcome", Text),  # NULL while the attempt runs
                 CheckConstraint(f"outcome IS NULL OR {_one_of('outcome', OUTCOMES)}", name="attempts_outcome"),
                 Index("attempts_by_job", "job_key"), Index("attempts_by_run", "run_id"))
# job_key is the identity (UNIQUE, the ON CONFLICT target); id only orders results stored in the same millisecond.
RESULTS = Table("results", METADATA, Column("id", Integer, primary_key=True, autoincrement=True),
                Column("job_key", Text, nullable=False, unique=True),
                *_texts("run_id", "bundle_sha256", "device_id", "target", "protocol_hash", "runner", "model",
                        "recipe"),
                Column("created", Double, nullable=False), Column("passed", Boolean, nullable=False),
                Column("summary", _Json(), nullable=False), Column("report", _Json()), Column("repeats", _Json()),
                Index("results_by_model", "model", "recipe", "device_id", "created"))
LEASES = lease_table(METADATA)


@dataclass(frozen=True)
class DeviceRow:
    device_id: str
    target: str
    transport: str
    facts: dict
    health: str
    health_reason: str
    updated: float


@dataclass(frozen=True)
class AttemptRow:
    id: int
    job_key: str
    attempt: int
    run_id: str
    device_id: str
    node: str
    started: float
    ended: float | None
    outcome: str | None  # None while running
    detail: str
    raw_line: str


@dataclass(frozen=True)
class ResultRow:
    job_key: str
    run_id: str
    bundle_sha256: str
    device_id: str
    target: str
    protocol_hash: str
    runner: str
    model: str
    recipe: str
    created: float
    passed: bool
    summary: dict
    report: dict | None
    repeats: Any


def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no spaces, no NaN (NaN would make equal inputs hash differently)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def protocol_hash(protocol: dict) -> str:
    return hashlib.sha256(canonical_json(protocol).encode()).hexdigest()


def job_key(run_id: str, bundle_sha256: str, device_or_target: str, protocol: dict, runner: str) -> str:
    """The identity of one job: the same inputs give the same key on every host and every retry."""
    fields_ = {"run_id": run_id, "bundle_sha256": bundle_sha256, "device_or_target": device_or_target,
               "protocol_hash": protocol_hash(protocol), "runner": runner}
    return hashlib.sha256(canonical_json(fields_).encode()).hexdigest()




def open_store(url: str) -> ResultStore:
    """The store at `url`, its tables created if absent. A bad URL is a ConfigError naming it and what to do."""
    parsed = parse_url(url)
    shown = parsed.render_as_string(hide_password=True)
    sqlite = parsed.get_backend_name() == "sqlite"
    try:  # a busy SQLite file waits 30 s for the other writer; an unreachable server fails within 10 s
        engine = create_engine(parsed, json_serializer=canonical_json, pool_pre_ping=True,
                               connect_args={"timeout": 30} if sqlite else {"connect_timeout": 10})
    except (ArgumentError, ImportError) as e:  # ArgumentError includes NoSuchModuleError (unknown driver)
        raise ConfigError(f"cannot use database URL {shown}: {e}; {URL_HINT}") from e
    store = ResultStore(engine, shown)
    try:
        store.ensure_schema()
    except DBAPIError as e:
        engine.dispose()
        todo = ("pick a writable file path" if sqlite else
                "start the server, or fix the user, host, port or database in the URL")
        reason = str(e.orig).strip().splitlines()[0] if str(e.orig).strip() else type(e.orig).__name__
        raise ConfigError(f"cannot open the results store {shown}: {reason}; {todo}") from e
    return store


def _select(table: Table, cls) -> Any:
    return select(*(table.c[f.name] for f in fields(cls)))


class ResultStore:
    def __init__(self, engine: Engine, url: str):
        self.engine = engine
        self.url = url  # password hidden: safe in messages
        self.dialect = engine.dialect.name
        self.leases = StoreLease(engine, LEASES)  # store.leases.take_lease / renew_lease / release_lease

    def close(self) -> None:
        self.engine.dispose()

    def ensure_schema(self) -> None:
        """Create the tables that are absent (never alters one that exists)."""
        try:
            METADATA.create_all(self.engine, checkfirst=True)
        except DBAPIError as e:
            # Another host created a table between our check and our CREATE; the second pass sees it.
            if not (isinstance(e, IntegrityError) or "already exists" in str(e.orig)):
                raise
            METADATA.create_all(self.engine, checkfirst=True)

    # runs
    def start_run(self, run_id: str, spec: dict, host: str | None = None) -> bool:
        """Record a new run as `running`; False (and nothing changed) when run_id exists, e.g. on --resume."""
        stmt = self._insert(RUNS).values(run_id=run_id, created=self._now(), spec=spec,
                                         host=host or socket.gethostname(), status="running")
        return self._write(stmt.on_conflict_do_nothing(index_elements=["run_id"])) == 1

    def run_spec(self, run_id: str) -> dict | None:
        """What a run was asked to do (its bundles, devices or targets, protocol), for --resume."""
        with self.engine.connect() as conn:
            row = conn.execute(select(RUNS.c.spec).where(RUNS.c.run_id == run_id)).first()
        return None if row is None else row[0]

    def run_status(self, run_id: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(RUNS.c.status).where(RUNS.c.run_id == run_id)).first()
        return None if row is None else row[0]

    def finish_run(self, run_id: str, status: str) -> None:
        if self._write(update(RUNS).where(RUNS.c.run_id == run_id).values(status=status)) != 1:
            raise self._missing("run", run_id, "runs", "start_run it first")

    # devices
    def upsert_device(self, device_id: str, target: str, transport: str, facts: dict | None = None) -> None:
        """Add or update what the device is; its health is kept (a new device starts `unknown`: probe it)."""
        ins = self._insert(DEVICES).values(device_id=device_id, target=target, transport=transport,
                                           facts=facts or {}, health="unknown", health_reason="",
                                           updated=self._now())
        self._write(ins.on_conflict_do_update(index_elements=["device_id"], set_={
            "target": ins.excluded.target, "transport": ins.excluded.transport, "facts": ins.excluded.facts,
            "updated": ins.excluded.updated}))

    def set_health(self, device_id: str, health: str, reason: str = "") -> None:
        if health not in HEALTH:
            raise unknown_id("device health", health, HEALTH)
        stmt = (update(DEVICES).where(DEVICES.c.device_id == device_id)
                .values(health=health, health_reason=reason, updated=self._now()))
        if self._write(stmt) != 1:
            raise self._missing("device", device_id, "devices", "upsert_device it first")

    def health(self, device_id: str) -> str:
        """The device's health; `unknown` for a device the store has not seen."""
        row = self.device(device_id)
        return row.health if row else "unknown"

    def device(self, device_id: str) -> DeviceRow | None:
        return next(iter(self._rows(DeviceRow, _select(DEVICES, DeviceRow).where(DEVICES.c.device_id == device_id))),
                    None)

    # bundles
    def record_bundle(self, sha256: str, recipe: str, model: str, target: str, nbytes: int, manifest: dict) -> bool:
        """Content-addressed: a sha256 already stored is the same bundle, so a second record changes nothing."""
        stmt = self._insert(BUNDLES).values(sha256=sha256, recipe=recipe, model=model, target=target,
                                            bytes=nbytes, manifest=manifest)
        return self._write(stmt.on_conflict_do_nothing(index_elements=["sha256"])) == 1

    # attempts
    def record_attempt(self, job_key: str, attempt: int, run_id: str, device_id: str, node: str = "") -> int:
        """A started attempt (outcome NULL until finish_attempt); returns its id."""
        stmt = ATTEMPTS.insert().values(job_key=job_key, attempt=attempt, run_id=run_id, device_id=device_id,
                                        node=node, started=self._now(), detail="", raw_line="")
        with self.engine.begin() as conn:
            return int(conn.execute(stmt).inserted_primary_key[0])

    def finish_attempt(self, attempt_id: int, outcome: str, detail: str = "", raw_line: str = "") -> bool:
        """Write the attempt's outcome once. False when it already had one (a late report changes no history)."""
        if outcome not in OUTCOMES:
            raise unknown_id("attempt outcome", outcome, OUTCOMES)
        stmt = (update(ATTEMPTS).where(ATTEMPTS.c.id == attempt_id, ATTEMPTS.c.outcome.is_(None))
                .values(outcome=outcome, detail=detail, raw_line=raw_line, ended=self._now()))
        if self._write(stmt) == 1:
            return True
        if not self.attempts(attempt_id=attempt_id):
            raise self._missing("attempt", str(attempt_id), "attempts", "use the id record_attempt returned")
        return False

    def attempts(self, run_id: str | None = None, job_key: str | None = None,
                 attempt_id: int | None = None) -> list[AttemptRow]:
        """Attempts in the order they started."""
        stmt = _select(ATTEMPTS, AttemptRow).order_by(ATTEMPTS.c.id)
        for column, value in (("run_id", run_id), ("job_key", job_key), ("id", attempt_id)):
            if value is not None:
                stmt = stmt.where(ATTEMPTS.c[column] == value)
        return self._rows(AttemptRow, stmt)

    # results
    def insert_result(self, *, job_key: str, run_id: str, bundle_sha256: str, device_id: str, target: str,
                      protocol_hash: str, runner: str, model: str, recipe: str, passed: bool, summary: dict,
                      report: dict | None = None, repeats: Any = None, created: float | None = None) -> bool:
        """True when the row is new; False when job_key already has a result, which is kept unchanged."""
        values = {k: v for k, v in locals().items() if k not in ("self", "created")}
        stmt = self._insert(RESULTS).values(**values, created=self._now() if created is None else created)
        return self._write(stmt.on_conflict_do_nothing(index_elements=["job_key"])) == 1

    def has_result(self, job_key: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(RESULTS.c.id).where(RESULTS.c.job_key == job_key)).first() is not None

    def results(self, model: str | None = None, recipe: str | None = None, device: str | None = None,
                target: str | None = None, run_id: str | None = None, limit: int | None = None,
                before: float | None = None) -> list[ResultRow]:
        """Results matching every filter given, newest first; `before`: stored strictly earlier than that time."""
        stmt = _select(RESULTS, ResultRow).order_by(RESULTS.c.created.desc(), RESULTS.c.id.desc()).limit(limit)
        for column, value in (("model", model), ("recipe", recipe), ("device_id", device), ("target", target),
                              ("run_id", run_id)):
            if value is not None:
                stmt = stmt.where(RESULTS.c[column] == value)
        if before is not None:
            stmt = stmt.where(RESULTS.c.created < before)
        return self._rows(ResultRow, stmt)

    def last_result(self, model: str, recipe: str, device_id: str, before: float | None = None) -> ResultRow | None:
        """The newest result of this model and recipe on this device (stored before `before` where given):
        the baseline a new result is compared with."""
        rows = self.results(model=model, recipe=recipe, device=device_id, before=before, limit=1)
        return rows[0] if rows else None

    # helpers
    def _now(self):
        return db_now(self.dialect)

    def _insert(self, table: Table):
        return dialect_insert(self.dialect)(table)

    def _write(self, stmt) -> int:
        return write(self.engine, stmt)

    def _rows(self, cls, stmt) -> list:
        with self.engine.connect() as conn:
            return [cls(**row) for row in conn.execute(stmt).mappings()]

    def _missing(self, kind: str, key: str, table: str, todo: str) -> ConfigError:
        return ConfigError(f"no {kind} {key!r} in table {table} of {self.url}; {todo}")
