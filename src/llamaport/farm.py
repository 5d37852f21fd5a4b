"""`llamaport farm`: many bundles x many devices, results stored in one database, build after build.

    run      plan jobs (bundle x device, or bundle x target), run them on the inventory's devices (this host's
             workers, or Ray nodes with --ray), store every attempt and result; --resume RUN re-plans only what
             has no result
    results  list and filter stored results
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from llamaport.errors import ConfigError

from llamaport.runtime_tests.farm import DEFAULT_STORE_URL as DEFAULT_DB


@dataclass(frozen=True)
class FarmRunRequest:
    bundles: tuple[Path, ...] = ()
    devices: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    inventory: Path | None = None
    db: str = DEFAULT_DB
    run_id: str | None = None
    resume: str | None = None
    max_attempts: int = 3
    timeout_s: float = 1800.0
    all_runners: bool = False
    decode_tokens: int = 64
    warmup: int = 1
    repeats: int = 5
    ray_address: str | None = None


def _spec(request: FarmRunRequest) -> dict:
    return {"bundles": [str(Path(b).resolve()) for b in request.bundles], "devices": list(request.devices),
            "targets": list(request.targets), "inventory": str(request.inventory) if request.inventory else None,
            "all_runners": request.all_runners,
            "protocol": {"decode_tokens": request.decode_tokens, "warmup": request.warmup, "repeats": request.repeats}}


def run_farm(request: FarmRunRequest, progress: Callable = lambda *a: None):
    """(run id, FarmOutcome). Jobs that already have a result in the store (a resumed run) are not run again."""
    from llamaport.runtime_tests.farm.jobs import plan_jobs
    from llamaport.runtime_tests.farm.scheduler import FarmSettings, LocalFarm
    from llamaport.runtime_tests.farm.store import open_store
    from llamaport.targets.inventory import load_inventory, local_inventory

    store = open_store(request.db)
    try:
        run_id, spec = _run_spec(store, request)
        inventory = load_inventory(Path(spec["inventory"])) if spec["inventory"] else local_inventory()
        jobs = plan_jobs(run_id, [Path(b) for b in spec["bundles"]], inventory, spec["devices"] or None,
                         spec["targets"] or None, spec["protocol"], spec["all_runners"])
        todo = [j for j in jobs if not store.has_result(j.key)]
        _record_devices_and_bundles(store, inventory, todo)
        settings = FarmSettings(max_attempts=request.max_attempts, timeout_s=request.timeout_s)
        if request.ray_address:
            from llamaport.runtime_tests.farm.ray_farm import RayFarm
            farm = RayFarm(store, inventory, settings, request.ray_address, progress)
        else:
            farm = LocalFarm(store, inventory, settings, progress)
        try:
            outcome = farm.run(todo)
        except KeyboardInterrupt:
            store.finish_run(run_id, "interrupted")
            raise
        store.finish_run(run_id, "finished" if not outcome.unfinished else "incomplete")
        return run_id, outcome, len(jobs) - len(todo)
    finally:
        store.close()


def _run_spec(store, request: FarmRunRequest) -> tuple[str, dict]:
    if request.resume:
        spec = store.run_spec(request.resume)
        if spec is None:
            raise ConfigError(f"--resume {request.resume}: no such run in {request.db}; `llamaport farm results` lists runs")
        return request.resume, spec
    if not request.bundles:
        raise ConfigError("farm run: give at least one bundle folder")
    run_id = request.run_id or uuid.uuid4().hex[:12]
    spec = _spec(request)
    if not store.start_run(run_id, spec):
        raise ConfigError(f"--run-id {run_id}: already in {request.db}; use --resume {run_id} to finish it")
    return run_id, spec


def _record_devices_and_bundles(store, inventory, jobs) -> None:
    from llamaport.runtime_tests.bundle_files import verify_bundle

    for d in inventory.devices:
        if store.device(d.id) is None:
            store.upsert_device(d.id, d.target, d.transport, dict(d.facts))
    for job in {j.bundle_sha256: j for j in jobs}.values():
        m = verify_bundle(job.bundle)
        store.record_bundle(job.bundle_sha256, m.recipe.id, job.model, m.target.name, m.artifact_bytes(), m.to_dict())


def farm_results(db: str = DEFAULT_DB, **filters) -> list:
    from llamaport.runtime_tests.farm.store import open_store

    store = open_store(db)
    try:
        return store.results(**filters)
    finally:
        store.close()
