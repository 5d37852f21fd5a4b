"""Target profiles: runtime, ordered backends, memory budget, context length, schemes it runs, gates.

Users add their own in TOML (`[[target]]` tables with the same fields); unknown keys are errors.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from llamaport.errors import ConfigError, unknown_id
from llamaport.targets.backends import BACKENDS, RUNTIMES

SCHEMA_VERSION = 1
# Accuracy metrics are against the full model; latency and size are measured by `llamaport check`.
# NPU metrics are the compiler's estimate (Vela for Ethos-U): ms per generated token, SRAM, flash of all programs.
GATE_METRICS = ("same_top1_pct", "ppl_ratio", "kld_mean", "kld_p99", "logit_sqnr_db", "greedy_match_pct",
                "decode_tokens_per_s", "prefill_tokens_per_s", "ttft_s", "artifact_bytes", "peak_rss_mb",
                "npu_estimated_ms", "npu_sram_bytes", "npu_flash_bytes")
NPU_GATE_METRICS = ("npu_estimated_ms", "npu_sram_bytes", "npu_flash_bytes")
# The values each metric can take: a bound outside them could never be met (or never missed), so it is a typo.
PERCENT_METRICS = ("same_top1_pct", "greedy_match_pct")
SIGNED_METRICS = ("logit_sqnr_db",)  # every other metric is >= 0 (ppl_ratio and the sizes and times > 0)


@dataclass(frozen=True)
class Gate:
    """One bound on one metric, e.g. Gate("same_top1_pct", min=85.0). Builds check the accuracy gates;
    `llamaport check` checks them all on the device."""

    metric: str
    min: float | None = None
    max: float | None = None

    def __post_init__(self):
        if self.metric not in GATE_METRICS:
            raise unknown_id("gate metric", self.metric, GATE_METRICS)
        if (self.min is None) == (self.max is None):
            raise ConfigError(f"gate {self.metric!r}: give exactly one of 'min' or 'max'")
        bound = self.min if self.min is not None else self.max
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or bound != bound or bound in (float("inf"), -float("inf")):
            raise ConfigError(f"gate {self.metric!r}: the bound must be a finite number, got {bound!r}")
        if self.metric in PERCENT_METRICS and not 0 <= bound <= 100:
            raise ConfigError(f"gate {self.metric!r}: {bound} is not a percentage (0 to 100)")
        if self.metric not in SIGNED_METRICS and bound < 0:
            raise ConfigError(f"gate {self.metric!r}: {bound} can never be met, the metric is never negative")

    def missed_by(self, value: float) -> float | None:
        """How far `value` is on the wrong side of the gate, or None when it passes."""
        if self.min is not None and value < self.min:
            return self.min - value
        if self.max is not None and value > self.max:
            return value - self.max
        return None

    def describe(self) -> str:
        return f"{self.metric} >= {self.min}" if self.min is not None else f"{self.metric} <= {self.max}"


@dataclass(frozen=True)
class NpuConfig:
    """The accelerator configuration the NPU compiler (Vela) targets and the board's memories. Sizes are those
    of Arm's reference systems (Corstone-300 / -320); a real board's go in a targets file."""

    accelerator: str  # Vela's --accelerator-config, e.g. ethos-u85-256
    system_config: str  # Vela's --system-config (clocks, memory ports) from ExecuTorch's vela.ini
    memory_mode: str  # Vela's --memory-mode: where the tensor arena and the weights live
    sram_bytes: int  # on-chip SRAM for the tensor arena
    flash_bytes: int  # where the .pte (weights + command stream) is placed
    board: str = ""

    def __post_init__(self):
        for name in ("sram_bytes", "flash_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"npu '{name}' must be positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class Target:
    name: str
    os: str
    arch: str
    runtime: str  # "executorch" | "onnxruntime"
    # The lowering order: each backend takes what it can, in turn; the last is the runtime's fallback
    # (ExecuTorch's portable kernels, onnxruntime's CPU provider). A recipe's backend must be one of them.
    backends: tuple[str, ...]
    memory_budget_mb: int  # a build whose estimated runtime memory exceeds it is refused
    default_context_len: int
    # Linear kinds this target runs: the first backend's, or fewer (a target narrows, never widens).
    linear_schemes: tuple[str, ...] = ()
    gates: tuple[Gate, ...] = field(default_factory=tuple)
    description: str = ""
    # Sustained DRAM bandwidth, where known: decode is then also reported as a fraction of the
    # bytes-per-token bound (bandwidth / model bytes).
    memory_bandwidth_gb_s: float | None = None
    default_recipe: str | None = None  # what `llamaport build --target NAME` builds without --recipe
    npu: NpuConfig | None = None  # for NPU backends: what the NPU compiler targets
    # Large vocabularies: without --recipe, a model whose fp32 embedding table is larger than
    # large_embedding_mb builds large_embedding_recipe instead (its embedding quantized, as ExecuTorch's
    # Llama 3.2 recipes do: a 128k x 2048 table is 1 GB of a 1.75 GB bundle in fp32).
    large_embedding_recipe: str | None = None
    large_embedding_mb: int | None = None

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise unknown_id("runtime", self.runtime, RUNTIMES)
        if not self.backends:
            raise ConfigError(f"'backends' is empty; name the lowering order, fallback last")
        for b in self.backends:
            if b not in BACKENDS or BACKENDS[b].runtime != self.runtime:
                raise unknown_id(f"{self.runtime} backend in 'backends'", b,
                                 [k for k, v in BACKENDS.items() if v.runtime == self.runtime])
        if len(set(self.backends)) != len(self.backends) or not BACKENDS[self.backends[-1]].fallback \
                or any(BACKENDS[b].fallback for b in self.backends[:-1]):
            fallbacks = [k for k, v in BACKENDS.items() if v.runtime == self.runtime and v.fallback]
            raise ConfigError(f"'backends' {list(self.backends)} must name each backend once "
                              f"and end with the fallback ({' or '.join(fallbacks)})")
        primary = BACKENDS[self.backends[0]]
        if primary.toolchain == "arm-ethos-u" and (self.npu is None or not self.npu.accelerator.startswith(primary.id)):
            raise ConfigError(f"target {self.name}: backend {primary.id} needs an [npu] table whose accelerator is "
                              f"one of {primary.id}'s configurations (e.g. {primary.id}-128)")
        if not self.linear_schemes:
            object.__setattr__(self, "linear_schemes", primary.linear_schemes)
        for kind in self.linear_schemes:
            limit = primary.forbidden(kind)
            if limit is not None:
                raise ConfigError(f"'linear_schemes' cannot enable {kind} on {primary.id}, "
                                  f"a known issue: {limit.describe()}")
            if kind not in primary.executes:
                raise ConfigError(f"'linear_schemes' names {kind!r}, which {primary.id} does not "
                                  f"execute; it runs {list(primary.linear_schemes)}")
        if (self.large_embedding_recipe is None) != (self.large_embedding_mb is None):
            raise ConfigError("'large_embedding_recipe' and 'large_embedding_mb' go together: give both or neither")
        for name, value in (("memory_budget_mb", self.memory_budget_mb), ("default_context_len", self.default_context_len),
                            ("memory_bandwidth_gb_s", self.memory_bandwidth_gb_s or 1),
                            ("large_embedding_mb", 1 if self.large_embedding_mb is None else self.large_embedding_mb)):
            if value <= 0:
                raise ConfigError(f"'{name}' must be positive, got {value}")

    @property
    def primary_backend(self) -> str:
        return self.backends[0]

    def known_issue(self, backend: str, kind: str):
        """The backend limit that forbids this linear kind, if one does."""
        return BACKENDS[backend].forbidden(kind)

    def lowering_conflict(self, backend: str, linear_kinds: set[str]):
        """The backend limit a program with these linear kinds together would break, if any."""
        return BACKENDS[backend].conflict(linear_kinds)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["schema_version"] = SCHEMA_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict, origin: str = "target") -> "Target":
        """A target from a user's TOML or a manifest: every field's type checked, unknown keys refused."""
        from llamaport.typed import from_dict

        d = dict(d)
        version = d.pop("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ConfigError(f"{origin}: target schema_version {version!r}; this llamaport reads {SCHEMA_VERSION}")
        return from_dict(cls, d, origin)


# Above this an fp32 embedding table is quantized by the CPU targets' defaults (4-bit, groups of 32, as
# ExecuTorch's XNNPACK Llama recipe `-E 4,32`): 64 MB is 16.8M entries, so stories110M (94 MB),
# SmolLM-135M (108 MB) and every Llama 3 (128k rows) are quantized, the bundled model (128 KB) is not.
LARGE_EMBEDDING_MB = 64

# The floor every XNNPACK phone build must clear on the bundle's own eval text.
_CPU_FLOOR = (Gate("same_top1_pct", min=85.0), Gate("ppl_ratio", max=1.10))


def _xnnpack(name, os_, arch, budget, bandwidth, description):
    return Target(name=name, os=os_, arch=arch, runtime="executorch", backends=("xnnpack", "portable"),
                  memory_budget_mb=budget, default_context_len=512,
                  gates=_CPU_FLOOR, description=description, memory_bandwidth_gb_s=bandwidth,
                  default_recipe="et-xnnpack-8da4w-g32", large_embedding_recipe="et-xnnpack-8da4w-g32-emb4g32",
                  large_embedding_mb=LARGE_EMBEDDING_MB)


def _ort(name, os_, arch, budget, bandwidth, description):
    return Target(name=name, os=os_, arch=arch, runtime="onnxruntime", backends=("cpu",),
                  memory_budget_mb=budget, default_context_len=512,
                  gates=_CPU_FLOOR, description=description, memory_bandwidth_gb_s=bandwidth,
                  default_recipe="ortgenai-cpu-8da4w-g32", large_embedding_recipe="ortgenai-cpu-8da4w-g32-emb4g32",
                  large_embedding_mb=LARGE_EMBEDDING_MB)


def _ethos_u(name, npu: NpuConfig, budget_mb, description):
    # The program must fit the board: Vela's SRAM and flash figures against the board's memories.
    fits = (Gate("npu_sram_bytes", max=npu.sram_bytes), Gate("npu_flash_bytes", max=npu.flash_bytes))
    return Target(name=name, os="none", arch="cortex-m", runtime="executorch", backends=(name.rsplit("-", 1)[0], "portable"),
                  memory_budget_mb=budget_mb, default_context_len=32, gates=_NPU_FLOOR + fits, description=description,
                  default_recipe=f"et-{name.rsplit('-', 1)[0]}-8a8w", npu=npu)


# Calibrated int8 loses more than dynamic quantization on a CPU (measured on the bundled model: 87.5% of
# same-top-1 with real calibration text); the flash gate keeps the program inside the board's flash.
_NPU_FLOOR = (Gate("same_top1_pct", min=80.0), Gate("ppl_ratio", max=1.25))
# Memory sizes: Arm's Corstone-300 (AN552 FPGA / FVP: 2 MiB + 2 MiB SRAM, 8 MiB+ QSPI flash) and
# Corstone-320 (4 MiB SRAM); ExecuTorch's defaults for clocks and memory modes.
ETHOS_U55_128 = NpuConfig("ethos-u55-128", "Ethos_U55_High_End_Embedded", "Shared_Sram", sram_bytes=2 * 2 ** 20,
                          flash_bytes=8 * 2 ** 20, board="Corstone-300 (Cortex-M55 + Ethos-U55-128)")
ETHOS_U85_256 = NpuConfig("ethos-u85-256", "Ethos_U85_SYS_DRAM_Mid", "Sram_Only", sram_bytes=4 * 2 ** 20,
                          flash_bytes=8 * 2 ** 20, board="Corstone-320 (Cortex-M85 + Ethos-U85-256)")


# Phone bandwidths are typical sustained figures of current flagship LPDDR5/5X SoCs (about half the
# peak); a host's varies too much to state, so it has none. Override in a targets file for a real device.
BUILTIN_TARGETS: dict[str, Target] = {t.name: t for t in (
    _xnnpack("android-arm64-xnnpack", "android", "arm64", 4096, 30.0, "Android phone CPU through XNNPACK"),
    _xnnpack("ios-arm64-xnnpack", "ios", "arm64", 3072, 30.0, "iPhone CPU through XNNPACK"),
    _xnnpack("linux-x86_64-xnnpack", "linux", "x86_64", 16384, None, "this host's CPU through XNNPACK"),
    _ort("android-arm64-ort", "android", "arm64", 4096, 30.0, "Android phone CPU through onnxruntime(-genai)"),
    _ort("ios-arm64-ort", "ios", "arm64", 3072, 30.0, "iPhone CPU through onnxruntime(-genai)"),
    _ort("linux-x86_64-ort", "linux", "x86_64", 16384, None, "this host's CPU through onnxruntime(-genai)"),
    Target(name="ios-arm64-coreml", os="ios", arch="arm64", runtime="executorch", backends=("coreml", "portable"),
           memory_budget_mb=3072, default_context_len=512, gates=_CPU_FLOOR, memory_bandwidth_gb_s=30.0,
           description="iPhone Neural Engine / GPU / CPU through CoreML", default_recipe="et-coreml-4w-g32-fp16"),
    Target(name="android-arm64-vulkan", os="android", arch="arm64", runtime="executorch", backends=("vulkan", "portable"),
           memory_budget_mb=4096, default_context_len=512, gates=_CPU_FLOOR, memory_bandwidth_gb_s=30.0,
           description="Android phone GPU through Vulkan", default_recipe="et-vulkan-8da4w-g32"),
    Target(name="android-arm64-qnn", os="android", arch="arm64", runtime="executorch", backends=("qnn", "portable"),
           memory_budget_mb=4096, default_context_len=512, gates=_CPU_FLOOR, memory_bandwidth_gb_s=30.0,
           description="Qualcomm Hexagon NPU through QNN (needs QNN_SDK_ROOT)", default_recipe="et-qnn-16a8w"),
    _ethos_u("ethos-u55-128", ETHOS_U55_128, 16, "Arm Ethos-U55 NPU (128 MACs) beside a Cortex-M55"),
    _ethos_u("ethos-u85-256", ETHOS_U85_256, 16, "Arm Ethos-U85 NPU (256 MACs) beside a Cortex-M85"),
)}


def read_toml(path: Path, what: str = "targets file", expected: str = "[[target]] tables") -> dict:
    """A user's TOML file, or one line saying why it cannot be read."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: {what} not found") from e
    except IsADirectoryError as e:
        raise ConfigError(f"{path}: is a folder; pass a TOML file of {expected}") from e
    except PermissionError as e:
        raise ConfigError(f"{path}: not readable (permission denied)") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from e


def load_targets(toml_path: Path | None = None) -> dict[str, Target]:
    """Built-in targets plus those of a user's TOML file (`[[target]]` tables)."""
    targets = dict(BUILTIN_TARGETS)
    if toml_path is None:
        return targets
    data = read_toml(toml_path)
    extra = set(data) - {"target"}
    if extra:
        raise ConfigError(f"{toml_path}: unknown top-level keys {sorted(extra)}; expected [[target]] tables")
    entries = data.get("target", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{toml_path}: 'target' must be [[target]] tables")
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        t = Target.from_dict(entry, origin=f"{toml_path}: target #{i + 1}{f' ({name})' if isinstance(name, str) else ''}")
        targets[t.name] = t
    return targets


def resolve_target(name: str, toml_path: Path | None = None) -> Target:
    targets = load_targets(toml_path)
    if name not in targets:
        raise unknown_id("target", name, targets)
    return targets[name]
