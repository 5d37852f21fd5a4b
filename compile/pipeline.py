"""The build pipeline: one typed `Build` passes through timed stages, each field written by one stage.

resolve (no weights read) -> load -> reference (full model's outputs, then the model is dropped) -> export
-> quantized (the recipe's quantized reference; golden outputs saved) -> package -> accuracy gate -> rename
the staged bundle into place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from compile.checkpoint import LlamaCheckpoint
from llamaport_errors import CheckFailed, LlamaportError, StageError
from quantize import Recipe, check_recipe_runs_on, resolve_recipe
from targets import Target, resolve_target

DEFAULT_MODEL = Path(__file__).parent / "default_model"
DEFAULT_RECIPE = "et-xnnpack-8da4w-g32"
DEFAULT_TARGET = "linux-x86_64-xnnpack"


@dataclass(frozen=True)
class BuildRequest:
    model: Path = DEFAULT_MODEL
    recipe: str | None = None  # None: the target's default recipe
    target: str = DEFAULT_TARGET
    out: Path = Path("bundle")
    max_seq_len: int | None = None
    eval_text: Path | None = None
    targets_file: Path | None = None
    overwrite: bool = False


@dataclass
class Build:
    request: BuildRequest
    recipe: Recipe | None = None  # resolve
    target: Target | None = None  # resolve
    source_format: str | None = None  # resolve
    checkpoint: LlamaCheckpoint | None = None  # load
    context_len: int | None = None  # load
    eval_set: object = None  # reference (compile.eval_data.EvalSet)
    full_reference: object = None  # reference (runtime_tests.golden.Reference of the full model)
    artifact: Path | None = None  # export: the model file ...
    artifact_files: list[str] = field(default_factory=list)  # export: ... and every file the exporter wrote
    golden: object = None  # quantized (runtime_tests.golden.Golden, also saved into the bundle)
    staging: Path | None = None  # set by run_build
    accuracy: dict | None = None  # accuracy
    manifest: dict | None = None  # package
    timings: dict[str, float] = field(default_factory=dict)

    def plan(self) -> dict:
        return {"model": str(self.request.model), "source_format": self.source_format, "recipe": self.recipe.to_dict(),
                "target": self.target.to_dict(), "out": str(self.request.out), "max_seq_len": self.request.max_seq_len}


ProgressFn = Callable[[str, str, float], None]


def resolve(request: BuildRequest) -> Build:
    """Everything decidable without reading weights: ids, the recipe-target fit, the source format."""
    from compile.sources import detect_format

    build = Build(request)
    build.target = resolve_target(request.target, request.targets_file)
    build.recipe = resolve_recipe(request.recipe or build.target.default_recipe or DEFAULT_RECIPE)
    check_recipe_runs_on(build.recipe, build.target)
    build.source_format = detect_format(Path(request.model))
    return build


def _stages():
    from compile import stages
    return [("load", stages.load), ("reference", stages.reference), ("export", stages.export),
            ("quantized", stages.quantized), ("package", stages.package), ("accuracy", stages.accuracy)]


def run_build(request: BuildRequest, progress: ProgressFn = lambda *a: None) -> Build:
    from compile.bundle import staging_folder

    build = resolve(request)
    with staging_folder(request.out, request.overwrite) as staging:
        build.staging = staging
        for name, stage in _stages():
            progress(name, "start", 0.0)
            start = time.perf_counter()
            try:
                stage(build)
            except (LlamaportError, KeyboardInterrupt):
                raise
            except Exception as e:
                raise StageError(name, f"{type(e).__name__}: {e}") from e
            build.timings[name] = round(time.perf_counter() - start, 3)
            progress(name, "done", build.timings[name])
        from compile.stages import finalize
        finalize(build)
        if build.accuracy["gate_failures"]:
            raise CheckFailed(f"{request.out}: the bundle misses the target's accuracy floor; nothing was written",
                              build.accuracy["gate_failures"])
    build.artifact = Path(request.out) / build.artifact.name  # the staging folder is now `out`
    build.staging = None
    return build
