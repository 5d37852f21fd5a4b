"""Quantization schemes and recipes as data. The torchao mapping lives in quantize.torchao_map
(imported only where torch is needed, so listing recipes stays fast)."""

from llamaport.quantize.recipes import RECIPES, Recipe, check_recipe_runs_on, resolve_recipe
from llamaport.quantize.schemes import SCHEMES, EmbeddingQuant, LinearQuant, QuantScheme, resolve_scheme

__all__ = ["RECIPES", "SCHEMES", "EmbeddingQuant", "LinearQuant", "QuantScheme", "Recipe",
           "check_recipe_runs_on", "resolve_recipe", "resolve_scheme"]
