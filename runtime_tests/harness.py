"""`check`: run a bundle's runners on a device, score them against the bundle's golden outputs, time
them, gate, and assemble the report (a dict; the CLI writes report.json and report.html).

The device needs only the bundle. Baselines (the eager full model, an fp32 bundle) run in the same
check on the same device with the same protocol and prompt, so speed-ups are measured side by side.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable

from llamaport_errors import ConfigError, DeviceError
from runtime_tests.bundle_files import golden_metadata, verify_bundle
from runtime_tests.device_run import RESULT_TAG  # imports no torch at module level
from runtime_tests.gates import ACCURACY_HEADLINE, missed_gates, with_overrides
from runtime_tests.latency import LatencyProtocol, memory_bound_fraction
from runtime_tests.runners import RUNNERS_FOR_EXPORTER
from targets import Gate, Target
from targets.devices import resolve_device

REPORT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Baseline:
    """A reference timed beside the bundle: `python -m module *args` on the same device."""

    name: str
    module: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class CheckRequest:
    bundle: Path
    device: str = "local"
    gate_overrides: tuple[Gate, ...] = ()
    protocol: LatencyProtocol = field(default_factory=LatencyProtocol)
    baselines: tuple[Baseline, ...] = ()
    timeout_s: float = 1800.0


def fp32_bundle_baseline(bundle: Path) -> Baseline:
    """An fp32 bundle timed by its layout's first runner; named `fp32-pte` or `fp32-onnx` after its artifact."""
    manifest = verify_bundle(bundle)
    runner = RUNNERS_FOR_EXPORTER[manifest["recipe"]["exporter"]][0]
    artifact = manifest["runtime"][manifest["target"]["runtime"]]["model"]
    return Baseline(f"fp32-{Path(artifact).suffix.lstrip('.')}", "runtime_tests.device_run",
                    (str(bundle), "--runner", runner, "--no-accuracy"))


def artifact_of(manifest: dict) -> dict:
    """The model file and every file it needs (ONNX external data), with their bytes together."""
    entry = manifest["runtime"][manifest["target"]["runtime"]]
    names = entry.get("artifact_files", [entry["model"]])
    files = [f for f in manifest["files"] if f["path"] in names]
    return {"path": entry["model"], "files": names, "bytes": sum(f["bytes"] for f in files)}


def parse_result(stdout: str) -> dict | None:
    lines = [ln[len(RESULT_TAG):] for ln in stdout.splitlines() if ln.startswith(RESULT_TAG)]
    return json.loads(lines[-1]) if lines else None


def _run(device, module: str, args: list[str], request: CheckRequest) -> dict:
    p = request.protocol
    proc = device.python_module(module, [*args, "--decode-tokens", str(p.decode_tokens), "--warmup", str(p.warmup),
                                         "--repeats", str(p.repeats)], request.timeout_s)
    result = parse_result(proc.stdout)
    if result is None or "error" in result:
        why = result["error"] if result else (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DeviceError(f"device {device.name}: {module} {' '.join(args)} failed: {why}")
    return result


def _summary(primary: dict, runners: dict, artifact_bytes: int, target: Target) -> dict:
    acc, lat = primary["accuracy"], primary["latency"]
    decode = lat["decode_tokens_per_s"]["median"]
    summary = {k: acc[k] for k in ACCURACY_HEADLINE}
    summary.update(decode_tokens_per_s=decode, prefill_tokens_per_s=lat["prefill_tokens_per_s"]["median"],
                   ttft_s=lat["ttft_s"]["median"], prompt_tokens=lat["prompt_tokens"], load_s=primary["load_s"],
                   peak_rss_mb=max(r["peak_rss_mb"] for r in runners.values()), artifact_bytes=artifact_bytes,
                   decode_fraction_of_bandwidth_bound=memory_bound_fraction(decode, artifact_bytes,
                                                                            target.memory_bandwidth_gb_s))
    return summary


def _speedups(primary: dict, baselines: dict) -> dict:
    decode = primary["latency"]["decode_tokens_per_s"]["median"]
    ttft = primary["latency"]["ttft_s"]["median"]
    return {name: {"decode": decode / b["latency"]["decode_tokens_per_s"]["median"],
                   "ttft": b["latency"]["ttft_s"]["median"] / ttft} for name, b in baselines.items()}


def _host() -> dict:
    import os
    return {"hostname": platform.node(), "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version()}


def check_bundle(request: CheckRequest, progress: Callable[[str], None] = lambda s: None) -> dict:
    bundle = Path(request.bundle)
    device = resolve_device(request.device)
    manifest = verify_bundle(bundle)
    target = Target.from_dict(manifest["target"], origin=f"{bundle}/manifest.json: target")
    gates = with_overrides(target.gates, list(request.gate_overrides))
    exporter = manifest["recipe"]["exporter"]
    if exporter not in RUNNERS_FOR_EXPORTER:
        raise ConfigError(f"{bundle}/manifest.json: no runner for bundles of exporter {exporter!r}")
    runners = {}
    for name in RUNNERS_FOR_EXPORTER[exporter]:
        progress(name)
        runners[name] = _run(device, "runtime_tests.device_run", [str(bundle), "--runner", name], request)
    baselines = {}
    for b in request.baselines:
        progress(b.name)
        baselines[b.name] = _run(device, b.module, list(b.args), request)
    primary = runners[RUNNERS_FOR_EXPORTER[exporter][0]]
    artifact = artifact_of(manifest)
    summary = _summary(primary, runners, artifact["bytes"], target)
    failures = missed_gates(summary, gates)
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "llamaport_version": metadata.version("llamaport"),
        "bundle": {"path": str(bundle.resolve()), "recipe": manifest["recipe"], "target": target.name,
                   "artifact": artifact, "golden": manifest.get("golden"), "model": manifest["model"],
                   "source": manifest["source"]["path"]},
        "device": {"name": device.name, "transport": device.transport, **_host()},
        "protocol": request.protocol.to_dict(),
        "quantization_gap": golden_metadata(bundle)["quantization_gap"],
        "runners": runners, "baselines": baselines, "speedups": _speedups(primary, baselines),
        "summary": summary, "gates": [g.describe() for g in gates], "gate_failures": failures,
        "passed": not failures,
    }
