"""One attempt of one job on one device: probe it if its health is unknown, run the runner through the
device's transport, score the raw result on this host, and write the attempt (and the result) rows.
Failures keep their class: a JobError is final; an infrastructure failure marks the device unknown and
hands the job back to the scheduler for another device."""

from __future__ import annotations

import socket
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

from llamaport.errors import DeviceError, JobError
from llamaport.runtime_tests.farm.jobs import Job
from llamaport.runtime_tests.farm.store import protocol_hash
from llamaport.typed import to_dict

OK, JOB_ERROR, INFRA_ERROR, TIMEOUT, LOST = "ok", "job_error", "infra_error", "timeout", "lost"


@dataclass(frozen=True)
class Outcome:
    outcome: str
    detail: str = ""
    result_new: bool | None = None  # ok: whether the result row was new (False: a duplicate, kept out)


def conditions(facts: dict) -> dict:
    """The device's thermal state and CPU governor, where it exposes them (timing noise has these causes)."""
    return {"thermal_millicelsius": facts.get("thermal_millicelsius") or {}, "cpu_governor": facts.get("cpu_governor")}


def run_measured(session, job: Job):
    """The job's runner on the session's device, with the device's conditions read before and after it."""
    from llamaport.runtime_tests.bundle_files import verify_bundle
    from llamaport.runtime_tests.latency import LatencyProtocol

    manifest = verify_bundle(job.bundle)
    before = conditions(session.probe())
    result = session.run_bundle(job.bundle, manifest, job.runner, LatencyProtocol(**job.protocol))
    return result, {"before": before, "after": conditions(session.probe()), "gates": manifest.target.gates}


def result_summary(result, measured: dict | None = None) -> dict:
    """What a result row keeps to list, filter and flag regressions by, from a runner's result; with the
    target's gates that this runner measures, and which it missed (a missed gate fails the job)."""
    from types import SimpleNamespace

    from llamaport.runtime_tests.gates import missed_gates

    lat = result.latency
    summary = {"runner": result.runner, "load_s": result.load_s, "peak_rss_mb": result.peak_rss_mb,
               "decode_tokens_per_s": lat.decode_tokens_per_s.median if lat.decode_tokens_per_s else None,
               "ttft_s": lat.ttft_s.median if lat.ttft_s else None,
               "decode_runs": list(lat.decode_tokens_per_s.runs) if lat.decode_tokens_per_s else []}
    if result.accuracy is not None:
        summary.update(vars(result.accuracy.vs_full.headline))
    if lat.token_latencies_s:
        ordered = sorted(lat.token_latencies_s)
        summary["token_p99_over_p50"] = ordered[int(0.99 * (len(ordered) - 1))] / ordered[len(ordered) // 2]
    measured = measured or {}
    summary["conditions"] = {k: measured.get(k) for k in ("before", "after")}
    gates = [g for g in measured.get("gates", ()) if summary.get(g.metric) is not None]
    summary["gates"] = [g.describe() for g in gates]
    summary["gate_failures"] = [vars(f) for f in missed_gates(SimpleNamespace(**summary), gates)]
    return summary


def store_result(store, job: Job, device_id: str, summary: dict, result=None) -> bool:
    """The job's result row, insert-if-absent on its key: True when new. A job error and a missed gate are
    results too (not passed; the error or the gates missed in its summary): final, never retried, and a
    resumed run does not plan them again."""
    passed = result is not None and not summary.get("gate_failures")
    report, repeats = (to_dict(result), to_dict(result.latency)) if result is not None else (None, None)
    return store.insert_result(job_key=job.key, run_id=job.run_id, bundle_sha256=job.bundle_sha256, device_id=device_id,
                               target=job.target, protocol_hash=protocol_hash(job.protocol), runner=job.runner,
                               model=job.model, recipe=job.recipe, passed=passed, summary=summary,
                               report=report, repeats=repeats)


def run_attempt(store, job: Job, entry, attempt: int, timeout_s: float, node: str | None = None) -> Outcome:
    """The attempt on `entry` (an inventory DeviceEntry); the caller holds the device's lease."""
    from llamaport.runtime_tests.device_session import DeviceSession

    attempt_id = store.record_attempt(job.key, attempt, job.run_id, entry.id, node or socket.gethostname())
    session = None
    try:
        with tempfile.TemporaryDirectory(prefix="llamaport-farm-") as tmp:
            session = DeviceSession(entry, Path(tmp), timeout_s)
            if store.health(entry.id) != "good":  # LAVA's rule: after an infrastructure error, probe first
                facts = session.probe()
                store.upsert_device(entry.id, entry.target, entry.transport, facts)
                store.set_health(entry.id, "good", "probe passed")
            result, measured = run_measured(session, job)
    except JobError as e:
        store.finish_attempt(attempt_id, JOB_ERROR, str(e), session.last_raw_line if session else "")
        store_result(store, job, entry.id, {"error": str(e)})
        return Outcome(JOB_ERROR, str(e))
    except DeviceError as e:
        outcome = TIMEOUT if "ran past" in str(e) else INFRA_ERROR
        store.finish_attempt(attempt_id, outcome, str(e))
        store.set_health(entry.id, "unknown", f"{outcome}: {e}")
        return Outcome(outcome, str(e))
    except Exception as e:  # a bug in llamaport's own host code: recorded, not blamed on the device
        store.finish_attempt(attempt_id, JOB_ERROR, f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        raise
    new = store_result(store, job, entry.id, result_summary(result, measured), result)
    store.finish_attempt(attempt_id, OK, "" if new else "duplicate: the job already had a result", session.last_raw_line)
    return Outcome(OK, result_new=new)
