"""A recipe = scheme + exporter + backend. Ids are generated: `et-xnnpack-8da4w-g32`, `ortgenai-cpu-8da4w-g32`.

Exporters: `executorch` (.pte), `ort-genai` (onnxruntime-genai's model builder: its bundle layout with
genai_config.json) and `optimum-onnx` (the Hugging Face ONNX layout, loadable by ORTModelForCausalLM).
Each builds only the schemes it can express; the registry holds exactly those combinations.
"""

from __future__ import annotations

from dataclasses import dataclass

from llamaport.errors import ConfigError, unknown_id
from llamaport.quantize.exporters import EXPORTERS, Exporter
from llamaport.quantize.schemes import SCHEMES, QuantScheme


@dataclass(frozen=True)
class Recipe:
    scheme: QuantScheme
    exporter: str = "executorch"
    backend: str = "xnnpack"

    def __post_init__(self):
        if self.exporter not in EXPORTERS:
            raise unknown_id("exporter", self.exporter, EXPORTERS)
        if self.backend not in EXPORTERS[self.exporter].backends:
            raise unknown_id(f"{self.exporter} backend", self.backend, EXPORTERS[self.exporter].backends)
        if not EXPORTERS[self.exporter].builds(self.scheme):
            raise ConfigError(f"exporter {self.exporter} cannot build scheme {self.scheme.id}")

    @property
    def id(self) -> str:
        return f"{self.capabilities.recipe_prefix}-{self.backend}-{self.scheme.id}"

    @property
    def capabilities(self) -> Exporter:
        return EXPORTERS[self.exporter]

    @property
    def runtime(self) -> str:
        return self.capabilities.runtime

    def to_dict(self) -> dict:
        return {"id": self.id, "exporter": self.exporter, "backend": self.backend, "scheme": self.scheme.to_dict()}


RECIPES: dict[str, Recipe] = {
    r.id: r for r in (
        Recipe(scheme, exporter.id, backend)
        for exporter in EXPORTERS.values()
        for backend in exporter.backends
        for scheme in SCHEMES.values()
        if exporter.builds(scheme)
    )
}


def runs_on(recipe: Recipe, target) -> str | None:
    """Why `target` cannot execute `recipe`, or None when it can."""
    if target.runtime != recipe.runtime:
        return f"recipe {recipe.id} builds for {recipe.runtime}, but target {target.name} runs {target.runtime}"
    if recipe.backend not in target.backends:
        return f"recipe {recipe.id} needs backend {recipe.backend}; target {target.name} lowers to {list(target.backends)}"
    kinds = recipe.scheme.linear_kinds()
    unsupported = kinds - set(target.linear_schemes)
    if unsupported:
        known = [lim for k in sorted(unsupported) if (lim := target.known_issue(recipe.backend, k)) is not None]
        why = f": a known issue: {known[0].describe()}" if known else ""
        return f"target {target.name} cannot run {sorted(unsupported)} linears; it runs {list(target.linear_schemes)}{why}"
    limit = target.lowering_conflict(recipe.backend, kinds)
    if limit is not None:
        return f"recipe {recipe.id} cannot be lowered: {limit.describe()}"
    return None


def recipes_for(target) -> list[str]:
    """Every recipe id the target can execute, in registry order."""
    return [r.id for r in RECIPES.values() if runs_on(r, target) is None]


def resolve_recipe(recipe_id: str, target=None) -> Recipe:
    """The recipe of this id; an unknown id answers with close matches and the ids valid for `target`."""
    if recipe_id not in RECIPES:
        valid = recipes_for(target) if target is not None else None
        raise unknown_id("recipe", recipe_id, RECIPES, valid, f"target {target.name}" if target is not None else "")
    return RECIPES[recipe_id]


def check_recipe_runs_on(recipe: Recipe, target) -> None:
    """Refuse, before any model is loaded, a recipe the target cannot execute."""
    why = runs_on(recipe, target)
    if why is not None:
        raise ConfigError(why)
