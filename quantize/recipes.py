"""A recipe = scheme + exporter + backend. Ids are generated: `et-xnnpack-8da4w-g32`, `ortgenai-cpu-8da4w-g32`.

Exporters: `executorch` (.pte), `ort-genai` (onnxruntime-genai's model builder: its bundle layout with
genai_config.json) and `optimum-onnx` (the Hugging Face ONNX layout, loadable by ORTModelForCausalLM).
Each builds only the schemes it can express; the registry holds exactly those combinations.
"""

from __future__ import annotations

from dataclasses import dataclass

from llamaport_errors import ConfigError, unknown_id
from quantize.schemes import SCHEMES, QuantScheme

EXPORTER_PREFIX = {"executorch": "et", "ort-genai": "ortgenai", "optimum-onnx": "onnx"}
EXPORTER_BACKENDS = {"executorch": ("xnnpack",), "ort-genai": ("cpu",), "optimum-onnx": ("cpu",)}
EXPORTER_RUNTIME = {"executorch": "executorch", "ort-genai": "onnxruntime", "optimum-onnx": "onnxruntime"}


def _executorch_builds(s: QuantScheme) -> bool:
    return not s.algorithms()  # torchao's own choice of rounding; see quantize.torchao_map


def _onnx_embedding_fits(s: QuantScheme) -> bool:
    """onnxruntime quantizes an embedding only as GatherBlockQuantized, 4-bit, in the linears' blocks."""
    emb = s.embedding
    return emb.bits == 32 or (emb.bits == 4 and s.linear.kind in ("4w", "8da4w") and emb.group_size == s.linear.group_size
                              and not s.algorithms())


def _ort_genai_builds(s: QuantScheme) -> bool:
    """The builder quantizes every MatMul alike (MatMulNBits, 4-bit) except an output layer it may skip; it
    has no per-channel int8 MatMul, and its algorithms are not the ones our ids name."""
    body, head = s.linear, s.output_quant
    return (body.kind in ("fp32", "4w", "8da4w") and not s.algorithms() and _onnx_embedding_fits(s)
            and (head == body or head.kind == "fp32"))


def _optimum_onnx_builds(s: QuantScheme) -> bool:
    """onnxruntime's quantizers on the exported graph: MatMulNBits (4w, 8da4w) or dynamic int8 (8da8w)."""
    body, head = s.linear, s.output_quant
    return (body.kind in ("fp32", "4w", "8da4w", "8da8w") and _onnx_embedding_fits(s)
            and (head == body or head.kind == "fp32"))


EXPORTER_SCHEMES = {"executorch": _executorch_builds, "ort-genai": _ort_genai_builds,
                    "optimum-onnx": _optimum_onnx_builds}


@dataclass(frozen=True)
class Recipe:
    scheme: QuantScheme
    exporter: str = "executorch"
    backend: str = "xnnpack"

    def __post_init__(self):
        if self.exporter not in EXPORTER_BACKENDS:
            raise unknown_id("exporter", self.exporter, EXPORTER_BACKENDS)
        if self.backend not in EXPORTER_BACKENDS[self.exporter]:
            raise unknown_id(f"{self.exporter} backend", self.backend, EXPORTER_BACKENDS[self.exporter])
        if not EXPORTER_SCHEMES[self.exporter](self.scheme):
            raise ConfigError(f"exporter {self.exporter} cannot build scheme {self.scheme.id}")

    @property
    def id(self) -> str:
        return f"{EXPORTER_PREFIX[self.exporter]}-{self.backend}-{self.scheme.id}"

    @property
    def runtime(self) -> str:
        return EXPORTER_RUNTIME[self.exporter]

    def to_dict(self) -> dict:
        return {"id": self.id, "exporter": self.exporter, "backend": self.backend, "scheme": self.scheme.to_dict()}


RECIPES: dict[str, Recipe] = {
    r.id: r for r in (
        Recipe(scheme, exporter, backend)
        for exporter, backends in EXPORTER_BACKENDS.items()
        for backend in backends
        for scheme in SCHEMES.values()
        if EXPORTER_SCHEMES[exporter](scheme)
    )
}


def resolve_recipe(recipe_id: str) -> Recipe:
    if recipe_id not in RECIPES:
        raise unknown_id("recipe", recipe_id, RECIPES)
    return RECIPES[recipe_id]


def check_recipe_runs_on(recipe: Recipe, target) -> None:
    """Refuse, before any model is loaded, a recipe the target cannot execute."""
    if target.runtime != recipe.runtime:
        raise ConfigError(f"recipe {recipe.id} builds for {recipe.runtime}, but target {target.name} runs {target.runtime}")
    if recipe.backend not in target.backends:
        raise ConfigError(f"recipe {recipe.id} needs backend {recipe.backend}; target {target.name} has {list(target.backends)}")
    kinds = recipe.scheme.linear_kinds()
    unsupported = kinds - set(target.linear_schemes)
    if unsupported:
        raise ConfigError(f"target {target.name} cannot run {sorted(unsupported)} linears; it runs {list(target.linear_schemes)}")
    if recipe.backend == "xnnpack" and "8w" in kinds and kinds & {"8da4w", "8da8w"}:
        # Weight-only and dynamically quantized linears need different XNNPACK partitioning
        # (see compile.exporters.executorch.xnnpack_partitioners); one .pte cannot have both.
        raise ConfigError(f"recipe {recipe.id} mixes 8w with dynamically quantized linears, which XNNPACK "
                          "cannot lower together; use 8da8w for the other layers")
