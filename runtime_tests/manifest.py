"""The bundle contract: manifest.json as frozen dataclasses with a versioned to_dict/from_dict.

Every reader of a bundle goes through `Manifest` (apps' loaders, the device runner, the check, the farm).
A bundle is two folders plus this file:
  model/  exactly what the runtime loads: the model file (and its external data), the tokenizer under a
          fixed name, the runtime's own config, the source's chat template and generation defaults;
  check/  what a device is judged by: the golden outputs and the build's accuracy.
An app team copies model/ as it is. Stdlib only: a device reads it with nothing but a runtime installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from llamaport.errors import ConfigError
from llamaport.targets import Target
from llamaport.typed import Versioned

MANIFEST = "manifest.json"
MANIFEST_SCHEMA_VERSION = 3
APP_FOLDER, CHECK_FOLDER = "model", "check"
GOLDEN_PATH, ACCURACY_PATH = f"{CHECK_FOLDER}/golden.safetensors", f"{CHECK_FOLDER}/accuracy.json"


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative to the bundle folder
    bytes: int
    sha256: str


@dataclass(frozen=True)
class SourceInfo:
    format: str  # hf | meta | llama2c
    path: str
    files: tuple[FileEntry, ...]
    tokenizer_kind: str  # hf_json | sentencepiece | tiktoken | llama2c
    tokenizer: FileEntry
    tokenizer_converted: str | None = None  # how a tokenizer.model became the bundle's tokenizer.json (ONNX)


@dataclass(frozen=True)
class RecipeInfo:
    id: str
    exporter: str
    backend: str
    runtime: str
    scheme: str  # the scheme id, e.g. 8da4w-g32
    full_precision: bool  # fp32 linears and embedding: the baseline other builds are timed against
    scheme_fields: dict  # the scheme as quantize.QuantScheme.to_dict gives it, for people and rebuilds
    chosen_by: str | None = None  # why this recipe: --recipe, the target's default, or its large-embedding default


@dataclass(frozen=True)
class ModelFacts:
    architecture: str
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    tie_word_embeddings: bool
    bos_id: int
    eos_ids: tuple[int, ...]
    context_len: int
    rope_theta: float
    rope_scaling: dict | None
    rope_layout: str  # how q/k weights are laid out in the artifact: meta-interleaved | hf-rotate-half
    parameters: int


@dataclass(frozen=True)
class RuntimeEntry:
    """What an app needs to load model/ with the runtime as it is."""

    runtime: str
    layout: str  # executorch-pte | onnxruntime-genai | huggingface-onnx
    model: str  # path of the model file, relative to the bundle
    artifact_files: tuple[str, ...]  # the model file and the weight data it needs
    tokenizer: str
    load_with: str
    min_runtime: str  # e.g. "executorch>=1.5.1": the oldest runtime the bundle was built and checked with
    runners: tuple[str, ...]  # the check's runners for this layout; the first gives the headline
    bos: str  # how an app gets BOS first, as the golden ids have it, with this runtime's own API
    app_config: str | None = None  # genai_config.json / config.json
    tokenizer_config: str | None = None
    generation_config: str | None = None
    chat_template: str | None = None  # the source's, where it has one (instruct models)
    generation_defaults: dict = field(default_factory=dict)

    @property
    def folder(self) -> str:
        return APP_FOLDER


@dataclass(frozen=True)
class Delegation:
    """ExecuTorch's delegation summary (executorch.devtools.backend_debug.get_delegation_info)."""

    backends: tuple[str, ...]
    delegated_subgraphs: int
    delegated_nodes: int
    non_delegated_nodes: int
    delegated_ops: dict[str, int]
    non_delegated_ops: dict[str, int]


@dataclass(frozen=True)
class Calibration:
    """What a static graph's activation ranges were measured on (never the eval text)."""

    source: str  # the text file, or "dummy" (one synthetic input, kept only to measure what calibration is worth)
    samples: int  # windows of `tokens_per_sample` tokens, each one forward
    tokens_per_sample: int
    text_sha256: str | None = None


@dataclass(frozen=True)
class NpuDelegateEstimate:
    """The NPU compiler's (Vela's) performance estimate for one delegated subgraph."""

    npu_cycles: int
    total_cycles: int  # NPU plus memory-bound cycles
    estimated_ms: float  # total cycles at the configured clock
    sram_bytes: int
    flash_bytes: int  # weights and command stream in the memory the target's memory mode puts them
    npu_ops: int  # operators the NPU compiler placed on the NPU ...
    cpu_ops: int  # ... and those it could not


@dataclass(frozen=True)
class NpuEstimate:
    """An estimate by the NPU compiler, not a measurement on silicon: cycles, time, SRAM and flash of one
    fixed-length forward, and what stays on the CPU."""

    compiler: str  # e.g. "ethos-u-vela 5.1.0"
    accelerator: str
    system_config: str
    memory_mode: str
    clock_mhz: float
    forward_tokens: int
    estimated_ms: float  # all delegates of one forward
    npu_cycles: int
    total_cycles: int
    sram_bytes: int  # the largest delegate's (they run one after the other)
    flash_bytes: int  # all delegates together
    delegates: tuple[NpuDelegateEstimate, ...]
    cpu_ops: dict[str, int]  # operators ExecuTorch left outside the NPU delegates (run on the Cortex-M)


@dataclass(frozen=True)
class LayerQuant:
    """One linear unit (q/k/v together, as onnxruntime-genai packs them) and what it got."""

    unit: str  # layers.3.mlp.down, output
    quant: str  # its LinearQuant id: 8da4w-g128-gptq, 8da8w (kept at 8 bits), fp32
    in_features: int
    padded_to: int | None = None  # input zero-padded to a whole number of groups (exact)
    kld_alone: float | None = None  # sensitivity: calibration KLD with only this unit at 4 bits


@dataclass(frozen=True)
class Lowering:
    """What was applied and what was lowered."""

    quantization: dict  # per layer family: torchao's config_to_dict, or onnxruntime's quantizer settings
    delegation: Delegation | None = None  # ExecuTorch
    op_counts: dict[str, int] | None = None  # ONNX: node types in the graph
    calibration: Calibration | None = None  # static (calibrated) graphs
    npu_estimate: NpuEstimate | None = None  # NPU backends: the compiler's estimate (the artifact's program)
    npu_decode_estimate: NpuEstimate | None = None  # ... and of the decode program (one token, KV cache), if any
    notes: tuple[str, ...] = ()  # what the exporter changed and proved unchanged (e.g. padding), in words
    layers: tuple[LayerQuant, ...] = ()  # what each linear unit got (quantize.plan)

    def npu_gate_values(self) -> "NpuGateValues | None":
        """What the target's NPU gates bound: the time per generated token (the decode program's, else one
        forward's), the larger SRAM need and the flash of every program the board holds."""
        programs = [e for e in (self.npu_estimate, self.npu_decode_estimate) if e is not None]
        if not programs:
            return None
        return NpuGateValues(npu_estimated_ms=programs[-1].estimated_ms,
                             npu_sram_bytes=max(e.sram_bytes for e in programs),
                             npu_flash_bytes=sum(e.flash_bytes for e in programs))


@dataclass(frozen=True)
class NpuGateValues:
    npu_estimated_ms: float
    npu_sram_bytes: int
    npu_flash_bytes: int


@dataclass(frozen=True)
class GoldenInfo:
    file: str
    bytes: int
    eval_source: str
    positions: int
    references: dict[str, str]  # reference name -> "full" (every logit) | "topk"
    top_k: int | None  # the most ids any position keeps, where a reference keeps an adaptive top-k
    prompts: int
    greedy_tokens: int
    latency_prompt_tokens: int
    # Fixed-length programs (NPUs): teacher-forced positions are scored in windows of this many tokens,
    # each read from its start, by every reference and runner alike.
    window: int | None = None
    kept_mass: float | None = None  # the probability each position's kept ids reach, unless capped at top_k
    tail_mass_max: float | None = None  # the most probability any position left in its tail


@dataclass(frozen=True, kw_only=True)
class SpreadStatistics:
    """llama.cpp's statistics (runtime_tests.metrics.spread_statistics): standard errors of the means, the KLD
    median and 99.9th percentile, Δp; shared by the records that carry accuracy (Headline, report.Metrics,
    report.Summary). Optional, so that manifests, golden files and reports written before they were measured
    still read: None there, and for standard errors over 10 positions or fewer. Gates read the standard errors
    (gates.STANDARD_ERROR) to say whether a miss is beyond the noise."""

    same_top1_se_pct: float | None = None
    kld_se: float | None = None
    # Where the golden keeps an adaptive top-k, kld_mean is the upper end of an exact interval and this its
    # lower end (runtime_tests.metrics.kld_interval); equal to kld_mean where every logit is kept.
    kld_lower_mean: float | None = None
    kld_median: float | None = None
    kld_p999: float | None = None
    ppl_ratio_se: float | None = None
    delta_p_mean_pct: float | None = None
    delta_p_se_pct: float | None = None
    delta_p_rms_pct: float | None = None
    delta_p_rms_se_pct: float | None = None


@dataclass(frozen=True)
class Headline(SpreadStatistics):
    """The accuracy metrics gates, manifests and reports read (all against a reference)."""

    same_top1_pct: float
    kld_mean: float
    kld_p99: float
    ppl_ratio: float
    logit_sqnr_db: float
    max_abs_logit_error: float
    greedy_match_pct: float

    @classmethod
    def of(cls, metrics: dict) -> "Headline":
        """The headline of a metrics dict (runtime_tests.metrics); optional fields it lacks are None."""
        from dataclasses import MISSING

        def value(f):
            v = metrics[f.name] if f.default is MISSING else metrics.get(f.name)
            return None if v is None else float(v)
        return cls(**{f.name: value(f) for f in fields(cls)})


# The headline's own metrics first, then the statistics (inherited fields come first in fields()).
SPREAD_STATISTICS = tuple(f.name for f in fields(SpreadStatistics))
ACCURACY_HEADLINE = tuple(f.name for f in fields(Headline) if f.name not in SPREAD_STATISTICS) + SPREAD_STATISTICS


@dataclass(frozen=True)
class GateFailure:
    gate: str
    metric: str
    value: float
    missed_by: float
    # The metric's standard error where it has one (runtime_tests.gates.STANDARD_ERROR), and whether the miss
    # exceeds twice it; None where the metric has none (latency, size) or it was not measured.
    standard_error: float | None = None
    beyond_noise: bool | None = None
    # KLD from an adaptive top-k golden is an interval; gates judge its upper end. This is its lower end
    # where that end meets the gate: the golden outputs keep too little to decide (None: decided).
    undecided_lower: float | None = None


@dataclass(frozen=True)
class BuildAccuracy:
    """The build's own gate: the artifact on this host's runtime against the full model."""

    vs_full: Headline
    quantization_gap: Headline  # the quantized reference against the full model
    greedy_identical: bool
    gates: tuple[str, ...]
    gate_failures: tuple[GateFailure, ...]
    # The runner whose outputs vs_full scores; for a bundle this host cannot run, the quantized reference
    # (then not_runnable_here says why, and vs_full is the quantization gap).
    measured_by: str = ""
    not_runnable_here: str | None = None


@dataclass(frozen=True)
class Manifest(Versioned):
    SCHEMA_VERSION: ClassVar[int] = MANIFEST_SCHEMA_VERSION
    KIND: ClassVar[str] = "bundle"
    ADVICE: ClassVar[str] = "rebuild the bundle with this llamaport"

    schema_version: int
    created: str
    llamaport_version: str
    source: SourceInfo
    recipe: RecipeInfo
    target: Target
    model: ModelFacts
    runtime: RuntimeEntry
    lowering: Lowering
    golden: GoldenInfo
    accuracy: BuildAccuracy
    versions: dict[str, str | None]
    timings_s: dict[str, float]
    files: tuple[FileEntry, ...]

    def artifact_bytes(self) -> int:
        """The model file and every file it needs (ONNX external data), together."""
        names = set(self.runtime.artifact_files)
        return sum(f.bytes for f in self.files if f.path in names)

    def app_files(self) -> tuple[FileEntry, ...]:
        return tuple(f for f in self.files if f.path.startswith(APP_FOLDER + "/"))


def read_manifest(bundle: Path) -> Manifest:
    """The bundle's manifest, parsed and type-checked (no file hashes checked: see verify_bundle)."""
    path = Path(bundle) / MANIFEST
    if not path.is_file():
        raise ConfigError(f"{bundle}: not a bundle ({MANIFEST} missing); build one with `llamaport build`")
    return Manifest.read(path)
