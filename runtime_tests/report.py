"""The check report: report.json as frozen dataclasses with a versioned to_dict/from_dict. Device runners
send their results as JSON; the host parses them into `RunnerResult` here, so every field a report holds
was type-checked once, and every reader (CLI, HTML, compare, sweep, farm) reads attributes, not keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from llamaport.runtime_tests.manifest import (Calibration, GateFailure, GoldenInfo, Headline, ModelFacts, NpuEstimate,
                                              RecipeInfo, SpreadStatistics)
from llamaport.typed import Versioned, from_dict, to_dict

REPORT = "report.json"
REPORT_SCHEMA_VERSION = 3


@dataclass(frozen=True)
class Spread:
    median: float
    min: float
    max: float
    runs: tuple[float, ...]


@dataclass(frozen=True)
class Latency:
    prompt_tokens: int
    decode_tokens: int
    warmup: int
    repeats: int
    ttft_s: Spread | None
    prefill_tokens_per_s: Spread | None
    decode_tokens_per_s: Spread | None
    token_latencies_s: tuple[float, ...] = ()
    generated_tokens: float | None = None  # runners that stop at EOS (the LLM runner)
    clock_resolution_s: float | None = None  # runners timed by a coarse clock of their own


@dataclass(frozen=True)
class Metrics(SpreadStatistics):
    """One set of logits and greedy runs against one golden reference (runtime_tests.metrics)."""

    positions: int
    logits_compared: str  # full | topk
    same_top1_pct: float
    kld_mean: float
    kld_p99: float
    ppl_reference: float
    ppl: float
    ppl_ratio: float
    logit_sqnr_db: float
    max_abs_logit_error: float
    kld_per_position: tuple[float, ...]
    greedy_tokens: int
    greedy_match_lengths: tuple[int, ...]
    greedy_match_pct: float
    greedy_identical: bool

    @property
    def headline(self) -> Headline:
        return Headline.of(to_dict(self))


@dataclass(frozen=True)
class RunnerAccuracy:
    vs_full: Metrics  # what gates judge
    lowering_gap: Metrics | None  # against the quantized reference: what the export and runtime changed


@dataclass(frozen=True)
class RunnerResult:
    runner: str
    load_s: float
    latency: Latency
    accuracy: RunnerAccuracy | None  # None where the runner cannot score logits, or was asked not to
    peak_rss_mb: float
    rss_before_load_mb: float
    prompt_tokens_match: bool | None = None  # text-in runners: did they tokenize the prompt to the golden ids


@dataclass(frozen=True)
class Artifact:
    path: str
    files: tuple[str, ...]
    bytes: int


@dataclass(frozen=True)
class BundleRef:
    path: str
    recipe: RecipeInfo
    target: str
    artifact: Artifact
    golden: GoldenInfo
    model: ModelFacts
    source: str
    sha256: str  # of manifest.json: the bundle's identity
    calibration: Calibration | None = None  # static (calibrated) builds: what ranges were measured on


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    transport: str
    hostname: str
    platform: str
    machine: str
    cpu_count: int | None
    python: str


@dataclass(frozen=True)
class Protocol:
    decode_tokens: int
    warmup: int
    repeats: int


@dataclass(frozen=True)
class Speedup:
    decode: float
    ttft: float | None


@dataclass(frozen=True)
class Summary(SpreadStatistics):
    same_top1_pct: float
    kld_mean: float
    kld_p99: float
    ppl_ratio: float
    logit_sqnr_db: float
    max_abs_logit_error: float
    greedy_match_pct: float
    decode_tokens_per_s: float
    prefill_tokens_per_s: float | None
    ttft_s: float | None
    prompt_tokens: int
    load_s: float
    peak_rss_mb: float
    artifact_bytes: int
    decode_fraction_of_bandwidth_bound: float | None
    # "measured" on the device, or "npu-estimate": the NPU compiler's time for one fixed-length forward
    # (one per generated token), where the runner is a simulator that is not timed.
    decode_source: str = "measured"
    npu_estimated_ms: float | None = None
    npu_sram_bytes: int | None = None
    npu_flash_bytes: int | None = None

    def metric(self, name: str) -> float | None:
        """A gate's metric by its name (gates are data: `{"metric": "kld_mean", "max": 0.01}`)."""
        return getattr(self, name)


@dataclass(frozen=True)
class Report(Versioned):
    SCHEMA_VERSION: ClassVar[int] = REPORT_SCHEMA_VERSION
    KIND: ClassVar[str] = "report"
    ADVICE: ClassVar[str] = "check the bundle again with this llamaport (pass report.json files or their folders)"

    schema_version: int
    created: str
    llamaport_version: str
    bundle: BundleRef
    device: DeviceInfo
    protocol: Protocol
    quantization_gap: Metrics
    runners: dict[str, RunnerResult]
    baselines: dict[str, RunnerResult]
    speedups: dict[str, Speedup]
    summary: Summary | None  # None when nothing ran (not_runnable_here)
    gates: tuple[str, ...]
    gate_failures: tuple[GateFailure, ...]
    passed: bool
    # A bundle for hardware no runner has (CoreML, Vulkan, QNN): "compiled; not runnable on this host: why".
    # Then no runner ran, and the gates judge the build's checks: the quantized eager model vs the full
    # model (quantization_gap).
    not_runnable_here: str | None = None
    npu_estimate: NpuEstimate | None = None  # the NPU compiler's estimate (from the bundle's manifest)
    npu_decode_estimate: NpuEstimate | None = None  # ... of the decode program, where the bundle has one
    simulator: str | None = None  # what ran the bundle's program instead of the hardware, in words

    @property
    def primary(self) -> RunnerResult:
        """The runner whose accuracy is the headline (the first of the layout's runners)."""
        return next(iter(self.runners.values()))

    def timed(self) -> dict[str, RunnerResult]:
        return {**self.runners, **self.baselines}


def read_report(path: Path) -> Report:
    """A report.json, or the folder holding one."""
    path = Path(path)
    return Report.read(path / REPORT if path.is_dir() else path)


def runner_result(data: dict, origin: str) -> RunnerResult:
    """A device's result line, type-checked: a malformed line is the device's failure, named as such."""
    return from_dict(RunnerResult, data, origin)
