"""The build stages (see llamaport.compile.pipeline.STAGES). Each takes the Build and fills the fields it
owns. Module imports stay light: `plan` runs for `build --dry-run`, which must not import torch."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from llamaport.errors import CheckFailed, ConfigError
from llamaport.paths import input_file, output_folder
from llamaport.runtime_tests.manifest import ACCURACY_PATH, APP_FOLDER, CHECK_FOLDER, GOLDEN_PATH, MANIFEST


def plan(build) -> None:
    """Ids, the recipe-target fit, the source format and the output folder: no weights read."""
    from llamaport.compile.pipeline import DEFAULT_RECIPE
    from llamaport.compile.sources import detect_format, embedding_shape
    from llamaport.quantize import check_recipe_runs_on, resolve_recipe
    from llamaport.targets import resolve_target

    request = build.request
    build.target = resolve_target(request.target, request.targets_file)
    if request.recipe is not None and not request.recipe.strip():
        raise ConfigError("--recipe is empty; give a recipe id (see `llamaport recipes`) or leave it out for the target's")
    build.recipe = resolve_recipe(request.recipe or build.target.default_recipe or DEFAULT_RECIPE, build.target)
    build.recipe_chosen_by = "--recipe" if request.recipe else f"target {build.target.name}'s default"
    check_recipe_runs_on(build.recipe, build.target)
    if build.recipe.exporter == "executorch-qnn":  # before any QNN code, which would try to download its SDK
        from llamaport.compile.exporters.qnn import check_sdk

        check_sdk()
    if request.max_seq_len is not None and request.max_seq_len < 32:
        raise ConfigError(f"--max-seq-len {request.max_seq_len} is too short; use at least 32")
    if request.eval_text is not None:
        input_file(Path(request.eval_text), "--eval-text", "a UTF-8 text file to score")
    out = output_folder(Path(request.out), "--out", source=Path(request.model))
    if out.exists() and not request.overwrite:
        raise ConfigError(f"{out}: already exists; choose another --out or pass --overwrite")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise ConfigError(f"--out {out}: holds files but no {MANIFEST}, so it is not a bundle --overwrite may replace; "
                          "choose another --out")
    build.source_format = detect_format(Path(request.model))
    shape = embedding_shape(Path(request.model), build.source_format)
    if shape is not None:
        _default_for_large_embedding(build, *shape)
    _plan_calibration(build)


def _plan_calibration(build) -> None:
    """Calibrated recipes (static int8, -gptq, -keep8xN) need calibration text (checked before any weights are
    read); others take none."""
    from llamaport.compile.calibration import calibration_path
    from llamaport.compile.eval_data import DEFAULT_EVAL_TEXT

    request = build.request
    if not build.recipe.scheme.calibrated:
        if request.calibration_text is not None or request.calibration_samples is not None:
            raise ConfigError(f"recipe {build.recipe.id} is not calibrated; --calibration-text and --calibration-samples "
                              "apply to calibrated recipes only (static int8, -gptq, -keep8xN)")
        return
    if request.calibration_samples is not None and request.calibration_samples < 1:
        raise ConfigError(f"--calibration-samples must be at least 1, got {request.calibration_samples}")
    calibration_path(Path(request.model), request.calibration_text, Path(request.eval_text or DEFAULT_EVAL_TEXT))


def _layer_widths(cfg: dict) -> dict[str, list[int]]:
    """Input widths of each layer family, for the group-size check."""
    return {"linear": [cfg["hidden_size"], cfg["num_attention_heads"] * cfg["head_dim"], cfg["intermediate_size"]],
            "output": [cfg["hidden_size"]], "embedding": [cfg["hidden_size"]]}


def _context_len(build, cfg: dict) -> int:
    limit = cfg["max_position_embeddings"]
    wanted = build.request.max_seq_len or min(build.target.default_context_len, limit)
    if wanted > limit:
        raise ConfigError(f"--max-seq-len {wanted} exceeds the model's max_position_embeddings {limit}")
    return wanted


def _check_memory_budget(build, cfg: dict, context_len: int) -> None:
    from llamaport.quantize.memory import estimate_runtime_memory

    estimate = estimate_runtime_memory(cfg, build.recipe.scheme, context_len)
    if estimate.total > build.target.memory_budget_mb * 2 ** 20:
        raise ConfigError(f"target {build.target.name}: memory_budget_mb {build.target.memory_budget_mb} is below the "
                          f"estimated runtime memory of {build.recipe.id} at context {context_len}: {estimate.describe()}; "
                          "use a smaller --max-seq-len, a smaller scheme, or a target with more memory")


def checkpoint(build) -> None:
    """The normalized checkpoint, checked against the recipe and target; then the staging folder, with the
    bundle's tokenizer written first (the eval ids come from the bundle's own file)."""
    from llamaport.compile.model_facts import model_facts
    from llamaport.compile.sources import load_checkpoint
    from llamaport.compile.tokenizer_convert import CONVERTIBLE
    from llamaport.compile.tokenizer_files import bundle_tokenizer_path, copy_into_bundle
    from llamaport.quantize.torchao_map import check_group_sizes

    ckpt = load_checkpoint(Path(build.request.model))
    _default_for_large_embedding(build, ckpt.config["vocab_size"], ckpt.config["hidden_size"])
    check_group_sizes(build.recipe.scheme, _layer_widths(ckpt.config))
    if build.recipe.runtime == "onnxruntime":
        from llamaport.compile.exporters.hf_folder_out import check_onnx_tokenizer
        from llamaport.quantize.onnx_map import check_block_counts

        if ckpt.tokenizer.kind not in CONVERTIBLE:  # sentencepiece and tiktoken become tokenizer.json below
            check_onnx_tokenizer(ckpt)
        check_block_counts(build.recipe.scheme, _layer_widths(ckpt.config))
    context_len = _context_len(build, ckpt.config)
    _check_memory_budget(build, ckpt.config, context_len)
    build.checkpoint, build.context_len = ckpt, context_len
    out = Path(build.request.out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    build.staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    (build.staging / APP_FOLDER).mkdir()
    from llamaport.compile.eval_data import DEFAULT_EVAL_TEXT, build_eval_set

    eval_text = Path(build.request.eval_text or DEFAULT_EVAL_TEXT)
    if build.recipe.runtime == "onnxruntime" and ckpt.tokenizer.kind in CONVERTIBLE:
        build.checkpoint = ckpt = _tokenizer_json(build, ckpt, eval_text)
    copy_into_bundle(ckpt, build.staging / APP_FOLDER)
    build.tokenizer = _bundle_tokenizer(build.staging / bundle_tokenizer_path(ckpt), ckpt, eval_text)
    build.model_facts = model_facts(ckpt, context_len)
    # The eval set is a few thousand ids, encoded here so that ids without an embedding row are refused
    # with the checkpoint, before its stage reports done.
    build.eval_set = build_eval_set(build.tokenizer, build.request.eval_text, context_len,
                                    build.recipe.capabilities.windowed)
    _check_ids_have_rows(build)
    build.calibration = _calibration_set(build)  # tokenized text too: refused here, before any forward pass


def _default_for_large_embedding(build, vocab: int, width: int) -> None:
    """Without --recipe, a model whose fp32 embedding table exceeds the target's large_embedding_mb builds the
    target's large_embedding_recipe (the embedding quantized); the manifest's recipe.chosen_by says so. Decided
    in `plan` from the config where it tells the shape, and again (the same rule) once the weights are read."""
    from llamaport.quantize import check_recipe_runs_on, resolve_recipe

    target = build.target
    table_mb = vocab * width * 4 / 2 ** 20
    if build.request.recipe or target.large_embedding_recipe is None or table_mb <= target.large_embedding_mb:
        return
    build.recipe = resolve_recipe(target.large_embedding_recipe, target)
    check_recipe_runs_on(build.recipe, target)
    build.recipe_chosen_by = (f"target {target.name}'s default for large embeddings: the fp32 table would be "
                              f"{table_mb:,.0f} MB ({vocab} x {width}), above large_embedding_mb {target.large_embedding_mb}")


def _tokenizer_json(build, ckpt, eval_text: Path):
    """A sentencepiece or tiktoken tokenizer.model as tokenizer.json in the bundle's model/ folder, for ONNX
    runtimes, kept only if it encodes the eval text to the original's ids (compile.tokenizer_convert)."""
    from llamaport.compile.eval_data import eval_texts
    from llamaport.compile.tokenizer_convert import convert_for_onnx
    from llamaport.compile.tokenizer_guard import probe_in_child

    probe_in_child(ckpt.tokenizer.path, eval_text, shown_as=ckpt.tokenizer.path)  # the original, read in-process next
    converted, build.tokenizer_conversion = convert_for_onnx(ckpt, build.staging / APP_FOLDER, eval_texts(eval_text))
    return converted


def _bundle_tokenizer(path: Path, ckpt, eval_text: Path):
    """The bundle's own tokenizer file, read by the runner's C++ tokenizer (the eval ids come from it: the
    ids a device will produce), with BOS and EOS checked against it. A child process reads it first: C++ that
    crashes on a file it does not expect must not take the build down without a message."""
    from llamaport.compile.tokenizer_guard import probe_in_child
    from llamaport.runtime_tests.tokenizer import TokenizerLoadError, load_tokenizer

    probe_in_child(path, eval_text, shown_as=ckpt.tokenizer.path)
    try:
        tok = load_tokenizer(path)
    except TokenizerLoadError as e:
        raise ConfigError(f"{ckpt.tokenizer.path}: ExecuTorch's tokenizer cannot read it ({'; '.join(e.reasons)})") from e
    check_special_ids(ckpt, tok.vocab_size())
    return tok


def full_reference(build) -> None:
    """The full model's outputs on the eval set; the model itself is dropped before the export."""
    from llamaport.compile.golden_build import full_reference as reference_of

    build.full_reference = reference_of(build.checkpoint, build.eval_set)


def _calibration_set(build):
    from llamaport.compile.calibration import DEFAULT_SAMPLES, build_calibration_set, calibration_path

    request = build.request
    if not build.recipe.scheme.calibrated:
        return None
    source = calibration_path(Path(request.model), request.calibration_text, Path(build.eval_set.source))
    # A fixed-length program calibrates on windows of its length; others on windows of at most 64 tokens
    # (activation ranges need variety more than length, and the calibration text stays short).
    window = build.context_len if build.recipe.capabilities.windowed else min(build.context_len, 64)
    return build_calibration_set(build.tokenizer, source, request.calibration_samples or DEFAULT_SAMPLES,
                                 window, build.checkpoint.config["vocab_size"])


def _check_ids_have_rows(build) -> None:
    """Every id the tokenizer gives the eval text and prompts must be a row of the embedding: a tokenizer of
    another (larger) vocabulary than the weights' was an IndexError inside the full model."""
    rows = build.checkpoint.config["vocab_size"]
    es = build.eval_set
    top = max(max(es.ids), *(max(p) for p in es.prompts), max(es.latency_prompt))
    if top >= rows:
        tok = build.checkpoint.tokenizer.path
        raise ConfigError(f"{tok}: encodes the eval text to id {top}, but the embedding has {rows} rows "
                          f"(vocab_size in the model's config); use the tokenizer the weights were trained with")


def check_special_ids(ckpt, tokenizer_vocab: int) -> None:
    """BOS and EOS must be tokens the tokenizer has and rows the embedding has: a config naming Llama 3's
    128000/128001 beside a 512-token tokenizer would otherwise build a bundle that never stops."""
    limit = min(tokenizer_vocab, ckpt.config["vocab_size"])
    for name, token in (("bos_token_id", ckpt.bos_id), *(("eos_token_id", e) for e in ckpt.eos_ids)):
        if not 0 <= token < limit:
            raise ConfigError(f"{ckpt.tokenizer.path.parent}: {name} {token} is outside the tokenizer's vocabulary "
                              f"({tokenizer_vocab} tokens in {ckpt.tokenizer.path.name}; the embedding has "
                              f"{ckpt.config['vocab_size']} rows); fix the id in the model's config or use its own tokenizer")


def layer_plan(build) -> None:
    """What each linear unit gets: for -gptq / -keep8xN recipes measured on the calibration text (GPTQ grids,
    sensitivity ranking), otherwise the scheme's families as they are. The manifest lists it unit by unit."""
    from llamaport.compile.quant_plan import build_plan, uniform_plan

    scheme = build.recipe.scheme
    if build.calibration is not None and not scheme.static:
        build.quant_plan = build_plan(build.checkpoint, scheme, build.calibration.windows, build.recipe.runtime)
    else:
        build.quant_plan = uniform_plan(scheme, build.checkpoint.config["num_hidden_layers"])


def artifact(build) -> None:
    """Quantize and export by the recipe; the exporter's files go into model/."""
    from llamaport.compile.runtime_entry import runtime_entry
    from llamaport.entry import load_entry

    work = build.staging / ".work"
    work.mkdir()
    from llamaport.compile.exporters.exported import ExportInputs

    plan = build.quant_plan if build.recipe.scheme.calibrated else None  # uniform plans need nothing from the exporter
    inputs = ExportInputs(target=build.target, eval_set=build.eval_set, calibration=build.calibration, plan=plan)
    exported = load_entry(build.recipe.capabilities.export)(
        build.checkpoint, build.recipe.scheme, build.context_len, build.target.backends, work, inputs)
    for f in exported.files:
        f.rename(build.staging / APP_FOLDER / f.name)
    for f in exported.check_files:  # what the check needs beside the app's files (the NPU's TOSA programs)
        dest = build.staging / CHECK_FOLDER / f.name
        dest.parent.mkdir(exist_ok=True)
        f.rename(dest)
    shutil.rmtree(work)
    exported = dataclasses.replace(exported, lowering=dataclasses.replace(
        exported.lowering, layers=layer_records(build), calibration=exported.lowering.calibration or (
            build.calibration.info if build.calibration is not None else None)))
    build.exported = exported
    if exported.rope_layout is not None:
        build.model_facts = dataclasses.replace(build.model_facts, rope_layout=exported.rope_layout)
    build.runtime_entry = runtime_entry(build)


def layer_records(build) -> tuple:
    """The manifest's per-unit list: setting, input width and the width padded to a whole group, and the
    unit's measured sensitivity where a plan measured one."""
    from llamaport.quantize.plan import hf_linears
    from llamaport.runtime_tests.manifest import LayerQuant

    from llamaport.compile.checkpoint import expected_shapes

    shapes = expected_shapes(build.checkpoint.config)  # from the config: reading a weight for its shape reads it all
    records = []
    for u in build.quant_plan.units:
        name = hf_linears(u.unit)[0] + ".weight"
        width = shapes.get(name, shapes["model.embed_tokens.weight"])[1]  # a tied output layer is the embedding
        group = u.quant.group_size
        padded = -(-width // group) * group if group and width % group else None
        records.append(LayerQuant(unit=u.unit, quant=u.quant.id, in_features=width, padded_to=padded,
                                  kld_alone=u.kld_alone))
    return tuple(records)


def quantized_reference(build) -> None:
    """The recipe's quantized reference on the eval set (ExecuTorch: torchao eager; ONNX: the bundle's
    weights dequantized): full vs it is the quantization gap, it vs the artifact the lowering gap."""
    from llamaport.entry import load_entry

    if build.exported.quantized_outputs is not None:  # the exporter ran its own (a calibrated graph's fake-quant)
        build.quantized_outputs = build.exported.quantized_outputs
        return
    if build.exported.quantized_reference is not None:  # from the model the exporter kept (ExecuTorch's eager)
        reference = build.exported.quantized_reference
        build.exported = dataclasses.replace(build.exported, quantized_reference=None)
        build.quantized_outputs = reference(build.eval_set)
        del reference  # the exporter's model goes now, before the golden and accuracy stages
        return
    # A calibrated plan (GPTQ grids, 8-bit units) is part of the weights: the eager reference applies it too;
    # ONNX references read the artifact's own weights and need nothing more.
    extra = {"plan": build.quant_plan} if build.recipe.scheme.calibrated and build.recipe.runtime == "executorch" else {}
    build.quantized_outputs = load_entry(build.recipe.capabilities.quantized_reference)(
        build.checkpoint, build.recipe.scheme, build.eval_set, build.context_len, build.staging / build.runtime_entry.model,
        **extra)


def golden(build) -> None:
    """The golden outputs a device is judged by, into check/."""
    from llamaport.compile.golden_build import assemble_golden

    q_logits, q_greedy = build.quantized_outputs
    build.golden = assemble_golden(build.eval_set, build.full_reference, q_logits, q_greedy)
    build.golden.save(build.staging / GOLDEN_PATH)
    build.quantized_outputs = None


def accuracy(build) -> None:
    """The artifact on this host's runtime against the golden outputs, with the code a device runs."""
    from llamaport.compile.build_accuracy import gate_build

    from llamaport.compile.bundle import write_json

    build.accuracy, build.accuracy_detail = gate_build(build)
    write_json(build.staging / ACCURACY_PATH, build.accuracy_detail)


def manifest(build) -> None:
    """The model card (README.md), then manifest.json: it lists every file with bytes and sha256."""
    from llamaport.compile.manifest_build import assemble_manifest
    from llamaport.compile.model_card import write_model_card

    write_model_card(assemble_manifest(build), build.staging)  # README.md is listed in the manifest too
    build.manifest = assemble_manifest(build)
    build.manifest.write(build.staging / MANIFEST)


def bundle(build) -> None:
    """The staged folder renamed into place, unless the build missed its gate (then nothing is written)."""
    from llamaport.compile.bundle import publish

    if build.accuracy.gate_failures:
        raise CheckFailed(f"{build.request.out}: the bundle misses the target's accuracy floor; nothing was written",
                          list(build.accuracy.gate_failures))
    build.bundle = publish(build.staging, Path(build.request.out), build.request.overwrite)
    build.staging = None


def discard_staging(build) -> None:
    if build.staging is not None and build.staging.exists():
        shutil.rmtree(build.staging, ignore_errors=True)
    build.staging = None


__all__ = ["plan", "checkpoint", "full_reference", "artifact", "quantized_reference", "golden", "accuracy", "manifest",
           "bundle", "discard_staging"]
