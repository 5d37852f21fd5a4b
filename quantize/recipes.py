"""A recipe = scheme + exporter + backend. Ids are generated: `et-xnnpack-8da4w-g32`."""

from __future__ import annotations

from dataclasses import dataclass

from llamaport_errors import ConfigError, unknown_id
from quantize.schemes import SCHEMES, QuantScheme

EXPORTER_PREFIX = {"executorch": "et"}
EXPORTER_BACKENDS = {"executorch": ("xnnpack",)}


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

    @property
    def id(self) -> str:
        return f"{EXPORTER_PREFIX[self.exporter]}-{self.backend}-{self.scheme.id}"

    def to_dict(self) -> dict:
        return {"id": self.id, "exporter": self.exporter, "backend": self.backend, "scheme": self.scheme.to_dict()}


RECIPES: dict[str, Recipe] = {
    r.id: r for r in (
        Recipe(scheme, exporter, backend)
        for exporter, backends in EXPORTER_BACKENDS.items()
        for backend in backends
        for scheme in SCHEMES.values()
    )
}


def resolve_recipe(recipe_id: str) -> Recipe:
    if recipe_id not in RECIPES:
        raise unknown_id("recipe", recipe_id, RECIPES)
    return RECIPES[recipe_id]


def check_recipe_runs_on(recipe: Recipe, target) -> None:
    """Refuse, before any model is loaded, a recipe the target cannot execute."""
    runtime = {"executorch": "executorch"}[recipe.exporter]
    if target.runtime != runtime:
        raise ConfigError(f"recipe {recipe.id} builds for {runtime}, but target {target.name} runs {target.runtime}")
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
