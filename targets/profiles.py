"""Target profiles: runtime, ordered backends, memory budget, context length, schemes it runs, gates.

Users add their own in TOML (`[[target]]` tables with the same fields); unknown keys are errors.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from llamaport_errors import ConfigError, unknown_id

SCHEMA_VERSION = 1
# Accuracy metrics are against the full model; latency and size are measured by `llamaport check`.
GATE_METRICS = ("same_top1_pct", "ppl_ratio", "kld_mean", "kld_p99", "logit_sqnr_db", "greedy_match_pct",
                "decode_tokens_per_s", "prefill_tokens_per_s", "ttft_s", "artifact_bytes", "peak_rss_mb")


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
class Target:
    name: str
    os: str
    arch: str
    runtime: str  # "executorch" | "onnxruntime"
    backends: tuple[str, ...]  # in order of preference; the last one is the fallback
    linear_schemes: tuple[str, ...]  # linear quantization kinds the backends execute
    memory_budget_mb: int
    default_context_len: int
    gates: tuple[Gate, ...] = field(default_factory=tuple)
    description: str = ""
    # Sustained DRAM bandwidth, where known: decode is then also reported as a fraction of the
    # bytes-per-token bound (bandwidth / model bytes).
    memory_bandwidth_gb_s: float | None = None
    default_recipe: str | None = None  # what `llamaport build --target NAME` builds without --recipe

    def to_dict(self) -> dict:
        d = asdict(self)
        d["schema_version"] = SCHEMA_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict, origin: str = "target") -> "Target":
        d = dict(d)
        d.pop("schema_version", None)
        allowed = {f.name for f in fields(cls)}
        extra = set(d) - allowed
        if extra:
            raise ConfigError(f"{origin}: unknown keys {sorted(extra)}; allowed: {sorted(allowed)}")
        missing = {f.name for f in fields(cls) if f.name not in ("gates", "description", "memory_bandwidth_gb_s", "default_recipe")} - set(d)
        if missing:
            raise ConfigError(f"{origin}: missing keys {sorted(missing)}")
        gates = []
        for g in d.get("gates", ()):
            unknown = set(g) - {"metric", "min", "max"}
            if unknown:
                raise ConfigError(f"{origin}: gate has unknown keys {sorted(unknown)}")
            gates.append(Gate(**g))
        d["gates"] = tuple(gates)
        d["backends"] = tuple(d["backends"])
        d["linear_schemes"] = tuple(d["linear_schemes"])
        return cls(**d)


# The floor every XNNPACK phone build must clear on the bundle's own eval text.
_CPU_FLOOR = (Gate("same_top1_pct", min=85.0), Gate("ppl_ratio", max=1.10))
# No "4w": ExecuTorch 1.5.1 lowers group-wise int4 weight-only linears wrongly through XNNPACK
# (torchao's dequantize_affine is miscompiled; dequantize_per_channel_group has no kernel).
_XNNPACK_LINEAR = ("fp32", "8w", "8da8w", "8da4w")


# onnxruntime's CPU execution provider (MLAS): MatMulNBits int4 with fp32 or int8 compute, dynamic int8.
_ORT_CPU_LINEAR = ("fp32", "4w", "8da4w", "8da8w")


def _xnnpack(name, os_, arch, budget, bandwidth, description):
    return Target(name=name, os=os_, arch=arch, runtime="executorch", backends=("xnnpack", "portable"),
                  linear_schemes=_XNNPACK_LINEAR, memory_budget_mb=budget, default_context_len=512,
                  gates=_CPU_FLOOR, description=description, memory_bandwidth_gb_s=bandwidth,
                  default_recipe="et-xnnpack-8da4w-g32")


def _ort(name, os_, arch, budget, bandwidth, description):
    return Target(name=name, os=os_, arch=arch, runtime="onnxruntime", backends=("cpu",),
                  linear_schemes=_ORT_CPU_LINEAR, memory_budget_mb=budget, default_context_len=512,
                  gates=_CPU_FLOOR, description=description, memory_bandwidth_gb_s=bandwidth,
                  default_recipe="ortgenai-cpu-8da4w-g32")


# Phone bandwidths are typical sustained figures of current flagship LPDDR5/5X SoCs (about half the
# peak); a host's varies too much to state, so it has none. Override in a targets file for a real device.
BUILTIN_TARGETS: dict[str, Target] = {t.name: t for t in (
    _xnnpack("android-arm64-xnnpack", "android", "arm64", 4096, 30.0, "Android phone CPU through XNNPACK"),
    _xnnpack("ios-arm64-xnnpack", "ios", "arm64", 3072, 30.0, "iPhone CPU through XNNPACK"),
    _xnnpack("linux-x86_64-xnnpack", "linux", "x86_64", 16384, None, "this host's CPU through XNNPACK"),
    _ort("android-arm64-ort", "android", "arm64", 4096, 30.0, "Android phone CPU through onnxruntime(-genai)"),
    _ort("ios-arm64-ort", "ios", "arm64", 3072, 30.0, "iPhone CPU through onnxruntime(-genai)"),
    _ort("linux-x86_64-ort", "linux", "x86_64", 16384, None, "this host's CPU through onnxruntime(-genai)"),
)}


def load_targets(toml_path: Path | None = None) -> dict[str, Target]:
    """Built-in targets plus those of a user's TOML file (`[[target]]` tables)."""
    targets = dict(BUILTIN_TARGETS)
    if toml_path is None:
        return targets
    try:
        data = tomllib.loads(Path(toml_path).read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"{toml_path}: targets file not found") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{toml_path}: not valid TOML ({e})") from e
    extra = set(data) - {"target"}
    if extra:
        raise ConfigError(f"{toml_path}: unknown top-level keys {sorted(extra)}; expected [[target]] tables")
    for i, entry in enumerate(data.get("target", [])):
        t = Target.from_dict(entry, origin=f"{toml_path}: target #{i + 1}")
        targets[t.name] = t
    return targets


def resolve_target(name: str, toml_path: Path | None = None) -> Target:
    targets = load_targets(toml_path)
    if name not in targets:
        raise unknown_id("target", name, targets)
    return targets[name]
