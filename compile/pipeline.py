"""The build pipeline: one typed `Build` passes through STAGES, each named by what it produces and each
filling the Build fields it owns. One loop runs them all, planning and the rename into place included:
every step is timed, and any error that is not already llamaport's becomes a StageError naming the step.

plan -> checkpoint -> full_reference (the full model is dropped after it) -> artifact (quantize + export)
-> quantized_reference -> golden -> accuracy (the build's gate) -> manifest -> bundle (renamed into place).
`build --dry-run` runs `plan` alone, which reads no weights and imports no torch.
"""

from __future__ import annotations

import gc
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

from llamaport.compile import heap, stages
from llamaport.errors import LlamaportError, StageError
from llamaport.quantize import Recipe
from llamaport.targets import Target

if TYPE_CHECKING:
    from llamaport.compile.checkpoint import LlamaCheckpoint
    from llamaport.compile.eval_data import EvalSet
    from llamaport.compile.exporters.exported import Exported
    from llamaport.runtime_tests.golden import Golden, Reference
    from llamaport.runtime_tests.manifest import BuildAccuracy, Manifest, ModelFacts, RuntimeEntry

log = logging.getLogger(__name__)
DEFAULT_MODEL = Path(__file__).parent / "default_model"
DEFAULT_RECIPE = "et-xnnpack-8da4w-g32"
DEFAULT_TARGET = "linux-x86_64-xnnpack"


@dataclass(frozen=True)
class BuildRequest:
    model: Path = DEFAULT_MODEL
    recipe: str | None = None  # None: the target's default recipe
    target: str = DEFAULT_TARGET
    out: Path = Path("bundle")
    max_seq_len: int | None = None  # None: the target's, capped by the model's
    eval_text: Path | None = None
    targets_file: Path | None = None
    overwrite: bool = False
    # Static int8 recipes: the text activation ranges are calibrated on (None: the model folder's
    # calibration.txt; "dummy": export_llama's one example input, only to measure what calibration is worth).
    calibration_text: Path | str | None = None
    calibration_samples: int | None = None


@dataclass
class Build:
    request: BuildRequest
    recipe: Recipe | None = None  # plan (a large embedding may change the target's default in checkpoint)
    recipe_chosen_by: str | None = None  # plan / checkpoint: what the manifest says chose the recipe
    target: Target | None = None  # plan
    source_format: str | None = None  # plan
    checkpoint: LlamaCheckpoint | None = None  # checkpoint
    context_len: int | None = None  # checkpoint
    staging: Path | None = None  # checkpoint: the bundle folder being written (beside --out)
    model_facts: ModelFacts | None = None  # checkpoint
    tokenizer_conversion: object = None  # checkpoint: a tokenizer.model converted to tokenizer.json (ONNX)
    tokenizer: object = None  # checkpoint: the bundle's tokenizer through pytorch_tokenizers (the device's ids)
    eval_set: EvalSet | None = None  # checkpoint (encoded with the tokenizer)
    calibration: object = None  # checkpoint: the CalibrationSet of a calibrated recipe
    full_reference: Reference | None = None  # full_reference
    quant_plan: object = None  # layer_plan: llamaport.quantize.plan.QuantPlan
    exported: Exported | None = None  # artifact
    runtime_entry: RuntimeEntry | None = None  # artifact
    quantized_outputs: tuple | None = None  # quantized_reference: (teacher-forced logits, greedy runs)
    golden: Golden | None = None  # golden
    accuracy: BuildAccuracy | None = None  # accuracy
    accuracy_detail: dict | None = None  # accuracy: what check/accuracy.json holds
    manifest: Manifest | None = None  # manifest
    bundle: Path | None = None  # bundle: the finished folder (`out`)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def artifact(self) -> Path:
        """The finished bundle's model file."""
        return self.bundle / self.manifest.runtime.model

    def plan(self) -> dict:
        """What `build --dry-run --json` prints and `build --config` reads back."""
        r = self.request
        return {"model": str(r.model), "source_format": self.source_format, "recipe": self.recipe.id,
                "target": self.target.name, "targets_file": str(r.targets_file) if r.targets_file else None,
                "recipe_chosen_by": self.recipe_chosen_by, "out": str(r.out), "max_seq_len": r.max_seq_len, "eval_text": str(r.eval_text) if r.eval_text else None,
                "calibration_text": str(r.calibration_text) if r.calibration_text else None,
                "calibration_samples": r.calibration_samples,
                "recipe_fields": self.recipe.to_dict(), "target_fields": self.target.to_dict()}


class Stage(NamedTuple):
    name: str  # what it produces
    run: Callable[[Build], None]


STAGES = (
    Stage("plan", stages.plan),
    Stage("checkpoint", stages.checkpoint),
    Stage("full_reference", stages.full_reference),
    Stage("layer_plan", stages.layer_plan),
    Stage("artifact", stages.artifact),
    Stage("quantized_reference", stages.quantized_reference),
    Stage("golden", stages.golden),
    Stage("accuracy", stages.accuracy),
    Stage("manifest", stages.manifest),
    Stage("bundle", stages.bundle),
)

ProgressFn = Callable[[str, str, float], None]


def _run_stage(build: Build, stage: Stage, progress: ProgressFn) -> None:
    progress(stage.name, "start", 0.0)
    start = time.perf_counter()
    try:
        stage.run(build)
    except (LlamaportError, KeyboardInterrupt):
        raise
    except Exception as e:
        raise StageError(stage.name, f"{type(e).__name__}: {e}") from e
    build.timings[stage.name] = round(time.perf_counter() - start, 3)
    log.info("stage %s done in %.3f s", stage.name, build.timings[stage.name])
    progress(stage.name, "done", build.timings[stage.name])


def run_build(request: BuildRequest, progress: ProgressFn = lambda *a: None, until: str | None = None) -> Build:
    """Run STAGES in order (up to and including `until`). Whatever fails, nothing half-written is left."""
    build = Build(request)
    heap.pin_mmap_threshold()  # freed weights go back to the system: a stage's peak is its own (compile.heap)
    try:
        for stage in STAGES:
            _run_stage(build, stage, progress)
            # A stage's models sit in reference cycles (ExecuTorch's export managers, torch.export's graphs):
            # collected here, not at some later allocation, so the next stage does not start on top of them.
            gc.collect()
            heap.trim()
            if stage.name == until:
                break
    finally:
        stages.discard_staging(build)
    return build


def plan_build(request: BuildRequest) -> Build:
    """Everything decidable without reading weights: ids, the recipe-target fit, the source format."""
    return run_build(request, until="plan")
