"""Quantization schemes as data, in ExecuTorch/optimum-executorch vocabulary (8w, 4w, 8da8w, 8da4w).

A scheme sets the transformer body's linears, the output layer and the embedding separately; its id is
generated from those fields so it cannot lie: `8da4w-g32`, `8da4w-g32-emb4g32`, `8da4w-g32-out8da8w`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from llamaport.errors import ConfigError, unknown_id

# Dynamic kinds ("da": activations quantized at run time, per token) suit CPUs; static kinds ("8a8w",
# "16a8w": activation scales fixed by calibration, integer-only graphs) are what NPUs execute.
LINEAR_KINDS = ("fp32", "8w", "4w", "8da8w", "8da4w", "8a8w", "16a8w")
STATIC_KINDS = ("8a8w", "16a8w")
# The dtype the float parts of the graph compute in: fp16 for backends that run half precision (CoreML).
COMPUTE_DTYPES = ("fp32", "fp16")
EMBEDDING_BITS = (32, 8, 4)
# The KV cache: fp32, or int8 per token with a scale and zero point each (ExecuTorch's quantized KV cache,
# export_llama's --quantize_kv_cache: a quarter of the cache bytes, read by its quantized SDPA op).
KV_CACHE_BITS = (32, 8)
# How weights are rounded, where the id names it. Without one, each path uses its own default: torchao's
# (HQQ scale-only for 8da*w, round-to-nearest otherwise) or onnxruntime's symmetric blockwise RTN (MLAS).
# "rtn" is onnxruntime's asymmetric RTN with zero points, "hqq" its HQQ: both ONNX-only. "gptq" rounds
# column by column against calibration activations (quantize.gptq), for ExecuTorch and ONNX alike.
ALGORITHMS = ("rtn", "hqq", "gptq")
ONNX_ONLY_ALGORITHMS = ("rtn", "hqq")
CALIBRATED_ALGORITHMS = ("gptq",)
# The 8-bit kind a 4-bit layer is kept at when a mixed-precision plan finds it sensitive.
EIGHT_BIT_OF = {"8da4w": "8da8w", "4w": "8w"}


@dataclass(frozen=True)
class LinearQuant:
    """kind: weight bits and whether activations are dynamically quantized to int8 ("da").
    group_size: elements sharing one scale along the input dimension; None means one per output channel."""

    kind: str = "fp32"
    group_size: int | None = None
    algorithm: str | None = None

    def __post_init__(self):
        if self.kind not in LINEAR_KINDS:
            raise unknown_id("linear quantization kind", self.kind, LINEAR_KINDS)
        if self.kind == "fp32" and (self.group_size is not None or self.algorithm is not None):
            raise ConfigError("fp32 linears take no group_size or algorithm")
        if self.kind in STATIC_KINDS and (self.group_size is not None or self.algorithm is not None):
            raise ConfigError(f"{self.kind} linears are per-channel and calibrated: no group_size or algorithm")
        if self.algorithm is not None and self.algorithm not in ALGORITHMS:
            raise unknown_id("quantization algorithm", self.algorithm, ALGORITHMS)
        if self.group_size is not None and (self.group_size <= 0 or self.group_size & (self.group_size - 1)):
            raise ConfigError(f"group_size must be a positive power of two, got {self.group_size}")

    @property
    def eight_bit(self) -> LinearQuant:
        """This layer kept at 8 bits: per output channel, rounded (torchao's / onnxruntime's default)."""
        return LinearQuant(EIGHT_BIT_OF[self.kind])

    @property
    def id(self) -> str:
        parts = [self.kind] + ([f"g{self.group_size}"] if self.group_size else []) + ([self.algorithm] if self.algorithm else [])
        return "-".join(parts)


@dataclass(frozen=True)
class EmbeddingQuant:
    bits: int = 32
    group_size: int | None = None

    def __post_init__(self):
        if self.bits not in EMBEDDING_BITS:
            raise ConfigError(f"embedding bits must be one of {EMBEDDING_BITS}, got {self.bits}")
        if self.bits == 32 and self.group_size is not None:
            raise ConfigError("an fp32 embedding takes no group_size")

    @property
    def id(self) -> str:
        if self.bits == 32:
            return ""
        return f"emb{self.bits}" + ("" if self.group_size is None else f"g{self.group_size}")


@dataclass(frozen=True)
class QuantScheme:
    linear: LinearQuant = LinearQuant()
    output: LinearQuant | None = None  # None: the output layer follows `linear`, as in ExecuTorch's qmode
    embedding: EmbeddingQuant = EmbeddingQuant()
    compute: str = "fp32"
    # Mixed precision chosen by sensitivity: the `keep8` linear units (quantize.plan.UNITS) whose 4-bit
    # rounding alone costs the most KL divergence on calibration text stay at 8 bits; the rest are 4-bit.
    keep8: int = 0
    kv_cache: int = 32  # bits of the KV cache entries (KV_CACHE_BITS)

    def __post_init__(self):
        if self.kv_cache not in KV_CACHE_BITS:
            raise ConfigError(f"kv_cache bits must be one of {KV_CACHE_BITS}, got {self.kv_cache}")
        if self.compute not in COMPUTE_DTYPES:
            raise unknown_id("compute dtype", self.compute, COMPUTE_DTYPES)
        if self.keep8 < 0:
            raise ConfigError(f"keep8 must be 0 or more, got {self.keep8}")
        if self.keep8 and self.linear.kind not in EIGHT_BIT_OF:
            raise ConfigError(f"keep8 keeps 4-bit layers at 8 bits; {self.linear.kind} linears are not 4-bit")
        kinds = self.linear_kinds()
        if kinds & set(STATIC_KINDS) and kinds - set(STATIC_KINDS):
            raise ConfigError("a static int8 graph quantizes every layer alike: the output layer cannot differ")
        if kinds & set(STATIC_KINDS) and self.embedding.bits != 32:
            raise ConfigError("static int8 schemes quantize the embedding with the graph; give no embedding setting")

    @property
    def static(self) -> bool:
        """Activation scales fixed by calibration: the build needs calibration text."""
        return bool(self.linear_kinds() & set(STATIC_KINDS))

    @property
    def calibrated(self) -> bool:
        """Needs calibration text at build time: static activation scales, GPTQ, or a sensitivity plan."""
        return self.static or bool(self.algorithms() & set(CALIBRATED_ALGORITHMS)) or self.keep8 > 0

    @property
    def output_quant(self) -> LinearQuant:
        return self.linear if self.output is None else self.output

    @property
    def id(self) -> str:
        parts = [self.linear.id]
        if self.output is not None and self.output != self.linear:
            parts.append(f"out{self.output.id}")
        if self.keep8:
            parts.append(f"keep8x{self.keep8}")
        if self.embedding.id:
            parts.append(self.embedding.id)
        if self.compute != "fp32":
            parts = [self.compute] if parts == ["fp32"] else parts + [self.compute]
        if self.kv_cache != 32:
            parts.append(f"kv{self.kv_cache}")
        return "-".join(parts)

    def linear_kinds(self) -> set[str]:
        return {self.linear.kind, self.output_quant.kind}

    def algorithms(self) -> set[str]:
        return {q.algorithm for q in (self.linear, self.output_quant) if q.algorithm}

    def group_sizes(self) -> dict[str, int]:
        """Which layer family needs its input width divisible by which group size."""
        sizes = {}
        for name, q in (("linear", self.linear), ("output", self.output_quant)):
            if q.group_size:
                sizes[name] = q.group_size
        if self.embedding.group_size:
            sizes["embedding"] = self.embedding.group_size
        return sizes

    def to_dict(self) -> dict:
        return {"id": self.id, **asdict(self), "output": asdict(self.output_quant)}


def _named(*schemes: QuantScheme) -> dict[str, QuantScheme]:
    return {s.id: s for s in schemes}


SCHEMES: dict[str, QuantScheme] = _named(
    QuantScheme(),
    QuantScheme(LinearQuant("8w")),
    QuantScheme(LinearQuant("8da8w")),
    *(QuantScheme(LinearQuant("8da4w", g)) for g in (32, 64, 128)),
    *(QuantScheme(LinearQuant("4w", g)) for g in (32, 64, 128)),
    *(QuantScheme(LinearQuant(kind, g, algo)) for kind in ("4w", "8da4w") for g in (32, 128) for algo in ALGORITHMS),
    *(QuantScheme(LinearQuant("8da4w", g, "gptq")) for g in (32, 64, 128)),  # calibrated rounding
    *(QuantScheme(LinearQuant("4w", g, "gptq")) for g in (32, 128)),
    # Mixed precision: the most sensitive units at 8 bits, rounded or GPTQ'd 4-bit elsewhere
    *(QuantScheme(LinearQuant("8da4w", g, algo), keep8=n) for g in (32, 128) for algo in (None, "gptq")
      for n in (1, 2, 4, 8)),
    QuantScheme(LinearQuant("8da4w", 128), embedding=EmbeddingQuant(4, 32)),  # ExecuTorch's README recommendation
    QuantScheme(LinearQuant("8da4w", 32), output=LinearQuant("8da8w")),  # ExecuTorch's 8da4w_output_8da8w
    QuantScheme(LinearQuant("8da4w", 32), output=LinearQuant("fp32")),  # the output layer kept full precision
    QuantScheme(LinearQuant("8da4w", 32), embedding=EmbeddingQuant(4, 32)),
    QuantScheme(LinearQuant("8da4w", 32), embedding=EmbeddingQuant(8)),
    QuantScheme(LinearQuant("8w"), embedding=EmbeddingQuant(8)),
    # int8 KV cache, for long contexts: beside the default linears, with and without the large-vocabulary embedding
    QuantScheme(kv_cache=8),
    QuantScheme(LinearQuant("8da4w", 32), kv_cache=8),
    QuantScheme(LinearQuant("8da4w", 32), embedding=EmbeddingQuant(4, 32), kv_cache=8),
    QuantScheme(LinearQuant("8a8w")),  # NPUs: calibrated int8 activations and weights
    QuantScheme(LinearQuant("16a8w")),  # Ethos-U85: 16-bit activations, int8 weights
    QuantScheme(compute="fp16"),  # CoreML: half precision throughout ...
    QuantScheme(LinearQuant("8w"), compute="fp16"),  # ... with int8 weights per channel
    QuantScheme(LinearQuant("4w", 32), compute="fp16"),  # ... with int4 weights in blocks of 32
)


def resolve_scheme(scheme_id: str) -> QuantScheme:
    if scheme_id not in SCHEMES:
        raise unknown_id("quantization scheme", scheme_id, SCHEMES)
    return SCHEMES[scheme_id]
