"""`check`: run a bundle's runners on a device, score them against the bundle's golden outputs, time
them, gate, and assemble the typed Report (the app layer writes report.json and report.html).

The device needs only the bundle. Baselines (the eager full model, an fp32 bundle) run in the same
check on the same device with the same protocol and prompt, so speed-ups are measured side by side.
"""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable

from llamaport.errors import ConfigError, DeviceError
from llamaport.runtime_tests.bundle_files import golden_metadata, sha256_of, verify_bundle
from llamaport.runtime_tests.device_run import RESULT_TAG  # imports no torch at module level
from llamaport.runtime_tests.gates import missed_gates, with_overrides
from llamaport.runtime_tests.latency import LatencyProtocol, memory_bound_fraction
from llamaport.runtime_tests.manifest import MANIFEST, Manifest
from llamaport.runtime_tests.report import (REPORT_SCHEMA_VERSION, Artifact, BundleRef, DeviceInfo, Metrics, Protocol,
                                            Report, RunnerResult, Speedup, Summary, runner_result)
from llamaport.runtime_tests.runners import RUNNERS
from llamaport.targets import Gate
from llamaport.targets.devices import resolve_device
from llamaport.typed import from_dict

DEVICE_RUN = "llamaport.runtime_tests.device_run"
log = logging.getLogger(__name__)


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
    if not manifest.recipe.full_precision:
        raise ConfigError(f"--baseline-bundle {bundle}: is {manifest.recipe.id}, not a full-precision bundle")
    return Baseline(f"fp32-{Path(manifest.runtime.model).suffix.lstrip('.')}", DEVICE_RUN,
                    (str(bundle), "--runner", manifest.runtime.runners[0], "--no-accuracy"))


def artifact_of(manifest: Manifest) -> Artifact:
    return Artifact(path=manifest.runtime.model, files=manifest.runtime.artifact_files, bytes=manifest.artifact_bytes())


def parse_result(stdout: str) -> dict | None:
    lines = [ln[len(RESULT_TAG):] for ln in stdout.splitlines() if ln.startswith(RESULT_TAG)]
    return json.loads(lines[-1]) if lines else None


def _run(device, module: str, args: list[str], request: CheckRequest) -> RunnerResult:
    p = request.protocol
    log.info("device %s: python -m %s %s", device.name, module, " ".join(args))
    proc = device.python_module(module, [*args, "--decode-tokens", str(p.decode_tokens), "--warmup", str(p.warmup),
                                         "--repeats", str(p.repeats)], request.timeout_s)
    what = f"device {device.name}: {module} {' '.join(args)}"
    try:
        result = parse_result(proc.stdout)
    except json.JSONDecodeError as e:
        raise DeviceError(f"{what} printed a malformed result line ({e})") from e
    if result is None or "error" in result:
        why = result["error"] if result else (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DeviceError(f"{what} failed: {why}")
    try:
        return runner_result(result, origin=f"{what}: result line")
    except ConfigError as e:
        raise DeviceError(str(e)) from e


def _summary(primary: RunnerResult, runners: dict[str, RunnerResult], artifact_bytes: int, target) -> Summary:
    lat = primary.latency
    if primary.accuracy is None or lat.decode_tokens_per_s is None:
        raise DeviceError(f"runner {primary.runner} returned no accuracy or decode speed; it cannot give the headline")
    decode = lat.decode_tokens_per_s.median
    head = primary.accuracy.vs_full.headline
    return Summary(**vars(head), decode_tokens_per_s=decode,
                   prefill_tokens_per_s=lat.prefill_tokens_per_s.median if lat.prefill_tokens_per_s else None,
                   ttft_s=lat.ttft_s.median if lat.ttft_s else None, prompt_tokens=lat.prompt_tokens, load_s=primary.load_s,
                   peak_rss_mb=max(r.peak_rss_mb for r in runners.values()), artifact_bytes=artifact_bytes,
                   decode_fraction_of_bandwidth_bound=memory_bound_fraction(decode, artifact_bytes,
                                                                            target.memory_bandwidth_gb_s))


def _speedups(primary: RunnerResult, baselines: dict[str, RunnerResult]) -> dict[str, Speedup]:
    decode, ttft = primary.latency.decode_tokens_per_s.median, primary.latency.ttft_s
    return {name: Speedup(decode=decode / b.latency.decode_tokens_per_s.median,
                          ttft=b.latency.ttft_s.median / ttft.median if ttft and b.latency.ttft_s else None)
            for name, b in baselines.items()}


def _host(device) -> DeviceInfo:
    import os
    return DeviceInfo(name=device.name, transport=device.transport, hostname=platform.node(),
                      platform=platform.platform(), machine=platform.machine(), cpu_count=os.cpu_count(),
                      python=platform.python_version())


def check_bundle(request: CheckRequest, progress: Callable[[str], None] = lambda s: None) -> Report:
    bundle = Path(request.bundle)
    device = resolve_device(request.device)
    manifest = verify_bundle(bundle)
    target = manifest.target
    gates = with_overrides(target.gates, list(request.gate_overrides))
    unknown = [r for r in manifest.runtime.runners if r not in RUNNERS]
    if unknown or not manifest.runtime.runners:
        raise ConfigError(f"{bundle}/{MANIFEST}: runners {unknown or '[]'} unknown to this llamaport; known: "
                          f"{', '.join(RUNNERS)}")
    runners = {}
    for name in manifest.runtime.runners:
        progress(name)
        runners[name] = _run(device, DEVICE_RUN, [str(bundle), "--runner", name], request)
    baselines = {}
    for b in request.baselines:
        progress(b.name)
        baselines[b.name] = _run(device, b.module, list(b.args), request)
    primary = runners[manifest.runtime.runners[0]]
    artifact = artifact_of(manifest)
    summary = _summary(primary, runners, artifact.bytes, target)
    failures = missed_gates(summary, gates)
    gap = from_dict(Metrics, golden_metadata(bundle)["quantization_gap"], f"{bundle}: golden quantization gap")
    return Report(
        schema_version=REPORT_SCHEMA_VERSION, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        llamaport_version=metadata.version("llamaport"),
        bundle=BundleRef(path=str(bundle.resolve()), recipe=manifest.recipe, target=target.name, artifact=artifact,
                         golden=manifest.golden, model=manifest.model, source=manifest.source.path,
                         sha256=sha256_of(bundle / MANIFEST)),
        device=_host(device), protocol=Protocol(**request.protocol.to_dict()), quantization_gap=gap,
        runners=runners, baselines=baselines, speedups=_speedups(primary, baselines), summary=summary,
        gates=tuple(g.describe() for g in gates), gate_failures=failures, passed=not failures)
