"""`check`: a bundle's runners on a device, their raw results scored on the host against the bundle's
golden outputs, timed, gated, assembled into the typed Report (the app layer writes report.json/html).

The device gets the bundle, the zipped device runner and one job file per runner, and needs only the
runtime. Baselines (the eager full model on this host, an fp32 bundle on the device) run in the same check
with the same protocol and prompt, so speed-ups are measured side by side.
"""

from __future__ import annotations

import logging
import platform
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable

from llamaport.errors import ConfigError
from llamaport.runtime_tests.bundle_files import golden_metadata, sha256_of, verify_bundle
from llamaport.runtime_tests.device_session import DeviceSession
from llamaport.runtime_tests.gates import missed_gates, with_overrides
from llamaport.runtime_tests.latency import LatencyProtocol, memory_bound_fraction
from llamaport.runtime_tests.manifest import MANIFEST, Manifest
from llamaport.runtime_tests.report import (REPORT_SCHEMA_VERSION, Artifact, BundleRef, DeviceInfo, Metrics, Protocol,
                                            Report, RunnerResult, Speedup, Summary)
from llamaport.targets import Gate
from llamaport.targets.devices import resolve_device
from llamaport.typed import from_dict

log = logging.getLogger(__name__)
KNOWN_RUNNERS = ("executorch-runtime", "executorch-llm-runner", "onnxruntime-genai", "onnxruntime", "tosa-reference-model")


@dataclass(frozen=True)
class Baseline:
    """A reference timed beside the bundle: the eager full model (on this host, where its files are), or
    an fp32 bundle (on the device, by its layout's first runner)."""

    name: str
    model: Path | None = None  # the eager full model's folder or file
    bundle: Path | None = None  # an fp32 bundle


@dataclass(frozen=True)
class CheckRequest:
    bundle: Path
    device: str = "local"
    inventory: Path | None = None
    gate_overrides: tuple[Gate, ...] = ()
    protocol: LatencyProtocol = field(default_factory=LatencyProtocol)
    baselines: tuple[Baseline, ...] = ()
    timeout_s: float = 1800.0


def fp32_bundle_baseline(bundle: Path) -> Baseline:
    """An fp32 bundle, named `fp32-pte` or `fp32-onnx` after its artifact."""
    manifest = verify_bundle(bundle)
    if not manifest.recipe.full_precision:
        raise ConfigError(f"--baseline-bundle {bundle}: is {manifest.recipe.id}, not a full-precision bundle")
    return Baseline(f"fp32-{Path(manifest.runtime.model).suffix.lstrip('.')}", bundle=Path(bundle))


def artifact_of(manifest: Manifest) -> Artifact:
    return Artifact(path=manifest.runtime.model, files=manifest.runtime.artifact_files, bytes=manifest.artifact_bytes())


def _summary(primary: RunnerResult, runners: dict[str, RunnerResult], artifact_bytes: int, target,
             lowering=None) -> Summary:
    from llamaport.errors import DeviceError

    lat = primary.latency
    npu = lowering.npu_gate_values() if lowering is not None else None
    per_token = lowering and (lowering.npu_decode_estimate or lowering.npu_estimate)  # one decode step / forward
    if lat.decode_tokens_per_s is not None:
        decode, source = lat.decode_tokens_per_s.median, "measured"
    elif per_token:  # a simulator, not timed: the NPU compiler's time for the program one token runs
        decode, source = 1000.0 / per_token.estimated_ms, "npu-estimate"
    else:
        decode = source = None
    if primary.accuracy is None or decode is None:
        raise DeviceError(f"runner {primary.runner} returned no accuracy or decode speed; it cannot give the headline")
    return Summary(**vars(primary.accuracy.vs_full.headline), decode_tokens_per_s=decode, decode_source=source,
                   npu_estimated_ms=npu.npu_estimated_ms if npu else None,
                   npu_sram_bytes=npu.npu_sram_bytes if npu else None, npu_flash_bytes=npu.npu_flash_bytes if npu else None,
                   prefill_tokens_per_s=lat.prefill_tokens_per_s.median if lat.prefill_tokens_per_s else None,
                   ttft_s=lat.ttft_s.median if lat.ttft_s else None, prompt_tokens=lat.prompt_tokens, load_s=primary.load_s,
                   peak_rss_mb=max(r.peak_rss_mb for r in runners.values()), artifact_bytes=artifact_bytes,
                   decode_fraction_of_bandwidth_bound=memory_bound_fraction(decode, artifact_bytes,
                                                                            target.memory_bandwidth_gb_s))


def _speedups(primary: RunnerResult, baselines: dict[str, RunnerResult]) -> dict[str, Speedup]:
    if not baselines:
        return {}
    decode, ttft = primary.latency.decode_tokens_per_s.median, primary.latency.ttft_s
    return {name: Speedup(decode=decode / b.latency.decode_tokens_per_s.median,
                          ttft=b.latency.ttft_s.median / ttft.median if ttft and b.latency.ttft_s else None)
            for name, b in baselines.items()}


def _device_info(entry, facts: dict) -> DeviceInfo:
    if entry.transport == "local":
        import os
        return DeviceInfo(name=entry.id, transport=entry.transport, hostname=platform.node(),
                          platform=platform.platform(), machine=platform.machine(), cpu_count=os.cpu_count(),
                          python=platform.python_version())
    return DeviceInfo(name=entry.id, transport=entry.transport, hostname=entry.address,
                      platform=str(facts.get("platform", "")), machine=str(facts.get("machine", "")),
                      cpu_count=facts.get("cpu_count"), python=str(facts.get("python", "")))


SIMULATORS = {"tosa-reference-model": "the TOSA reference model (tosa-tools) on this host: the NPU's own program with "
                                      "TOSA's exact integer semantics, not the silicon; speed is Vela's estimate"}


def _check_simulator_fits(manifest, entry, request) -> None:
    """A simulator runs on this host only, and is not timed: nothing to compare speed against."""
    from llamaport.runtime_tests.device_job import SIMULATOR_TOOLCHAINS

    simulated = [r for r in manifest.runtime.runners if r in SIMULATOR_TOOLCHAINS]
    if simulated and entry.transport != "local":
        raise ConfigError(f"{request.bundle}: runner {simulated[0]} simulates the NPU on this host; check it with "
                          f"--device local (device {entry.id} is {entry.transport})")
    if simulated and request.baselines:
        raise ConfigError(f"{request.bundle}: runner {simulated[0]} is not timed (Vela's estimate is the speed); "
                          "baselines compare measured speeds: leave out --baseline-model/--baseline-bundle")


def check_bundle(request: CheckRequest, progress: Callable[[str], None] = lambda s: None) -> Report:
    bundle = Path(request.bundle)
    entry = resolve_device(request.device, request.inventory)
    manifest = verify_bundle(bundle)
    if not manifest.runtime.runners and manifest.accuracy.not_runnable_here:
        return _not_runnable_report(bundle, manifest, entry, request)
    unknown = [r for r in manifest.runtime.runners if r not in KNOWN_RUNNERS]
    if unknown or not manifest.runtime.runners:
        raise ConfigError(f"{bundle}/{MANIFEST}: runners {unknown or '[]'} unknown to this llamaport; known: "
                          f"{', '.join(KNOWN_RUNNERS)}")
    _check_simulator_fits(manifest, entry, request)
    target, protocol = manifest.target, request.protocol
    gates = with_overrides(target.gates, list(request.gate_overrides))
    with tempfile.TemporaryDirectory(prefix="llamaport-check-") as tmp:
        session = DeviceSession(entry, Path(tmp), request.timeout_s)
        facts = session.probe()
        runners = {}
        for name in manifest.runtime.runners:
            progress(name)
            runners[name] = session.run_bundle(bundle, manifest, name, protocol)
        baselines = {}
        for b in request.baselines:
            progress(b.name)
            if b.model is not None:
                baselines[b.name] = session.run_eager(b.model, bundle, protocol)
            else:
                fp32 = verify_bundle(b.bundle)
                baselines[b.name] = session.run_bundle(b.bundle, fp32, fp32.runtime.runners[0], protocol, accuracy=False)
    primary = runners[manifest.runtime.runners[0]]
    artifact = artifact_of(manifest)
    summary = _summary(primary, runners, artifact.bytes, target, manifest.lowering)
    failures = missed_gates(summary, gates)
    gap = from_dict(Metrics, golden_metadata(bundle)["quantization_gap"], f"{bundle}: golden quantization gap")
    return Report(
        schema_version=REPORT_SCHEMA_VERSION, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        llamaport_version=metadata.version("llamaport"),
        bundle=_bundle_ref(bundle, manifest),
        device=_device_info(entry, facts), protocol=Protocol(**protocol.to_dict()), quantization_gap=gap,
        runners=runners, baselines=baselines, speedups=_speedups(primary, baselines), summary=summary,
        gates=tuple(g.describe() for g in gates), gate_failures=failures, passed=not failures,
        npu_estimate=manifest.lowering.npu_estimate, npu_decode_estimate=manifest.lowering.npu_decode_estimate,
        simulator=SIMULATORS.get(manifest.runtime.runners[0]))


def _bundle_ref(bundle: Path, manifest: Manifest) -> BundleRef:
    return BundleRef(path=str(bundle.resolve()), recipe=manifest.recipe, target=manifest.target.name,
                     artifact=artifact_of(manifest), golden=manifest.golden, model=manifest.model,
                     source=manifest.source.path, sha256=sha256_of(bundle / MANIFEST),
                     calibration=manifest.lowering.calibration)


def _not_runnable_report(bundle: Path, manifest: Manifest, entry, request: CheckRequest) -> Report:
    """A bundle no runner can execute (CoreML, Vulkan, QNN): nothing runs; the report says why and gates the
    build's own check, the quantized eager model against the full model (the golden quantization gap).
    Gates on what only a run measures (speed, memory) cannot be judged: asked for, they are refused."""
    if request.baselines:
        raise ConfigError(f"{bundle}: {manifest.accuracy.not_runnable_here}; nothing runs here to time beside "
                          "--baseline-model or --baseline-bundle: leave them out")
    gap = from_dict(Metrics, golden_metadata(bundle)["quantization_gap"], f"{bundle}: golden quantization gap")
    measurable = [g for g in manifest.target.gates if getattr(gap, g.metric, None) is not None]
    gates = with_overrides(measurable, list(request.gate_overrides))
    failures = missed_gates(gap, gates)
    return Report(
        schema_version=REPORT_SCHEMA_VERSION, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        llamaport_version=metadata.version("llamaport"), bundle=_bundle_ref(bundle, manifest),
        device=_device_info(entry, {}), protocol=Protocol(**request.protocol.to_dict()), quantization_gap=gap,
        runners={}, baselines={}, speedups={}, summary=None, gates=tuple(g.describe() for g in gates),
        gate_failures=failures, passed=not failures, npu_estimate=manifest.lowering.npu_estimate,
        not_runnable_here=manifest.accuracy.not_runnable_here)
