"""The manifest assembled from a finished Build: the one writer of the bundle contract."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from llamaport.compile.bundle import file_entry, now_utc, package_versions
from llamaport.runtime_tests.manifest import (GOLDEN_PATH, MANIFEST, MANIFEST_SCHEMA_VERSION, GoldenInfo, Manifest,
                                              RecipeInfo, SourceInfo)


def recipe_info(recipe, chosen_by: str | None = None) -> RecipeInfo:
    s = recipe.scheme
    return RecipeInfo(id=recipe.id, exporter=recipe.exporter, backend=recipe.backend, runtime=recipe.runtime,
                      scheme=s.id, full_precision=s.linear_kinds() == {"fp32"} and s.embedding.bits == 32,
                      scheme_fields=s.to_dict(), chosen_by=chosen_by)


def _golden_info(build) -> GoldenInfo:
    from llamaport.runtime_tests.golden import KEPT_MASS

    g = build.golden
    topk = [r for r in g.references.values() if r.kind == "topk"]
    return GoldenInfo(file=GOLDEN_PATH, bytes=(build.staging / GOLDEN_PATH).stat().st_size, eval_source=g.eval_source,
                      positions=len(g.ids) - 1, references={k: r.kind for k, r in g.references.items()},
                      top_k=max(int(r.topk_counts.max()) for r in topk) if topk else None, prompts=len(g.prompts),
                      greedy_tokens=g.greedy_tokens, latency_prompt_tokens=len(g.latency_prompt),
                      window=build.eval_set.window, kept_mass=KEPT_MASS if topk else None,
                      tail_mass_max=max(float(r.tail_mass.max()) for r in topk) if topk else None)


def _source_info(build) -> SourceInfo:
    ckpt, conversion = build.checkpoint, build.tokenizer_conversion
    tok = conversion.source if conversion is not None else ckpt.tokenizer  # the source's own file
    return SourceInfo(format=ckpt.source_format, path=str(Path(build.request.model).resolve()),
                      files=tuple(file_entry(p) for p in ckpt.source_files), tokenizer_kind=tok.kind,
                      tokenizer=file_entry(tok.path),
                      tokenizer_converted=conversion.describe() if conversion is not None else None)


def assemble_manifest(build) -> Manifest:
    staging = build.staging
    files = tuple(file_entry(p, staging) for p in sorted(staging.rglob("*")) if p.is_file() and p.name != MANIFEST)
    return Manifest(
        schema_version=MANIFEST_SCHEMA_VERSION, created=now_utc(), llamaport_version=metadata.version("llamaport"),
        source=_source_info(build), recipe=recipe_info(build.recipe, build.recipe_chosen_by), target=build.target, model=build.model_facts,
        runtime=build.runtime_entry, lowering=build.exported.lowering, golden=_golden_info(build),
        accuracy=build.accuracy, versions=package_versions(), timings_s=dict(build.timings), files=files)
