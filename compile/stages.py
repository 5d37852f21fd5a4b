"""The build stages. Each takes the Build and fills the fields it owns (see compile.pipeline.Build)."""

from __future__ import annotations

from pathlib import Path

from compile.bundle import file_entry, now_utc, package_versions, write_json
from compile.exporters import ARTIFACT_NAMES, EXPORTERS, QUANTIZED_REFERENCES
from compile.tokenizer_files import copy_into_bundle
from llamaport_errors import ConfigError
from runtime_tests.bundle_files import MANIFEST_SCHEMA_VERSION
from runtime_tests.gates import ACCURACY_HEADLINE
from runtime_tests.golden import GOLDEN_FILE


def _layer_widths(cfg: dict) -> dict[str, list[int]]:
    """Input widths of each layer family, for the group-size check."""
    return {"linear": [cfg["hidden_size"], cfg["num_attention_heads"] * cfg["head_dim"], cfg["intermediate_size"]],
            "output": [cfg["hidden_size"]], "embedding": [cfg["hidden_size"]]}


def load(build) -> None:
    from compile.sources import load_checkpoint
    from quantize.torchao_map import check_group_sizes

    ckpt = load_checkpoint(Path(build.request.model))
    check_group_sizes(build.recipe.scheme, _layer_widths(ckpt.config))
    if build.recipe.runtime == "onnxruntime":
        from compile.exporters.hf_folder_out import check_onnx_tokenizer
        from quantize.onnx_map import check_block_counts

        check_onnx_tokenizer(ckpt)
        check_block_counts(build.recipe.scheme, _layer_widths(ckpt.config))
    limit = ckpt.config["max_position_embeddings"]
    wanted = build.request.max_seq_len or min(build.target.default_context_len, limit)
    if wanted > limit:
        raise ConfigError(f"--max-seq-len {wanted} exceeds the model's max_position_embeddings {limit}")
    if wanted < 32:
        raise ConfigError(f"--max-seq-len {wanted} is too short; use at least 32")
    build.checkpoint, build.context_len = ckpt, wanted


def reference(build) -> None:
    """The full model's outputs on the eval set; the model itself is dropped before the export."""
    from compile.eval_data import build_eval_set
    from compile.golden_build import full_reference
    from runtime_tests.tokenizer import load_tokenizer

    ckpt = build.checkpoint
    # The tokenizer goes into the bundle first so the eval ids come from the bundle's own file,
    # read by the runner's C++ tokenizer: the ids a device will produce.
    tok_path = copy_into_bundle(ckpt.tokenizer, build.staging, ckpt.bos_id, ckpt.eos_ids[0], ckpt.config["vocab_size"])
    try:
        tok = load_tokenizer(tok_path)
    except ValueError as e:
        raise ConfigError(f"{ckpt.tokenizer.path}: ExecuTorch's tokenizer cannot read it ({e})") from e
    build.eval_set = build_eval_set(tok, build.request.eval_text, build.context_len)
    build.full_reference = full_reference(ckpt, build.eval_set)


def export(build) -> None:
    import shutil

    work = build.staging / ".work"
    work.mkdir()
    files = EXPORTERS[build.recipe.exporter](build.checkpoint, build.recipe.scheme, build.context_len, work)
    for f in files:
        f.rename(build.staging / f.name)
    shutil.rmtree(work)
    build.artifact_files = [f.name for f in files]
    build.artifact = build.staging / ARTIFACT_NAMES[build.recipe.exporter]


def quantized(build) -> None:
    """The recipe's quantized reference on the eval set, then the golden outputs into the bundle."""
    from compile.golden_build import assemble_golden

    q_logits, q_greedy = QUANTIZED_REFERENCES[build.recipe.exporter](
        build.checkpoint, build.recipe.scheme, build.eval_set, build.context_len, build.artifact)
    build.golden = assemble_golden(build.eval_set, build.full_reference, q_logits, q_greedy)
    build.golden.save(build.staging)


def _model_facts(build) -> dict:
    cfg = build.checkpoint.config
    return {
        "architecture": "LlamaForCausalLM", "vocab_size": cfg["vocab_size"], "hidden_size": cfg["hidden_size"],
        "num_hidden_layers": cfg["num_hidden_layers"], "num_attention_heads": cfg["num_attention_heads"],
        "num_key_value_heads": cfg["num_key_value_heads"], "head_dim": cfg["head_dim"],
        "intermediate_size": cfg["intermediate_size"], "tie_word_embeddings": cfg["tie_word_embeddings"],
        "bos_id": build.checkpoint.bos_id, "eos_ids": build.checkpoint.eos_ids, "context_len": build.context_len,
        "rope": {"theta": cfg["rope_theta"], "scaling": cfg["rope_scaling"], "layout": "meta-interleaved"},
    }


def package(build) -> None:
    ckpt = build.checkpoint
    build.manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION, "created": now_utc(),
        "source": {"format": ckpt.source_format, "path": str(Path(build.request.model).resolve()),
                   "files": [file_entry(p) for p in ckpt.source_files],
                   "tokenizer": {"kind": ckpt.tokenizer.kind, **file_entry(ckpt.tokenizer.path)}},
        "recipe": build.recipe.to_dict(), "target": build.target.to_dict(), "model": _model_facts(build),
        "runtime": {build.recipe.runtime: _runtime_entry(build)},
        "versions": package_versions(),
    }


# What an app needs to know to load each layout with its runtime as it is.
_LAYOUTS = {
    "ort-genai": {"layout": "onnxruntime-genai", "config": "genai_config.json", "load_with": "onnxruntime_genai.Model(bundle)",
                  "bos": "onnxruntime-genai's tokenizer adds no BOS: prepend model.bos_id to the prompt ids"},
    "optimum-onnx": {"layout": "huggingface-onnx", "config": "config.json",
                     "load_with": "optimum.onnxruntime.ORTModelForCausalLM.from_pretrained(bundle)"},
}


def _runtime_entry(build) -> dict:
    tokenizer = next(p.name for p in sorted(build.staging.iterdir()) if p.name.startswith("tokenizer."))
    entry = {"model": ARTIFACT_NAMES[build.recipe.exporter], "tokenizer": tokenizer,
             "artifact_files": [n for n in build.artifact_files if n == build.artifact.name or n.endswith(".data")]}
    if build.recipe.runtime == "onnxruntime":
        from quantize.onnx_map import describe
        entry.update(_LAYOUTS[build.recipe.exporter], quantization=describe(build.recipe.scheme))
    return entry


def accuracy(build) -> None:
    """The artifact on this host's runtime against the golden outputs, with the code a device runs."""
    from runtime_tests.accuracy import accuracy_of
    from runtime_tests.gates import missed_gates
    from runtime_tests.runners import step_model

    metrics = accuracy_of(step_model(build.recipe.exporter, build.staging, build.manifest), build.golden)
    metrics["quantization_gap"] = build.golden.quantization_gap
    build_gates = [g for g in build.target.gates if g.metric in metrics]  # latency gates wait for `check`
    metrics["gates"] = [g.describe() for g in build_gates]
    metrics["gate_failures"] = missed_gates(metrics, build_gates)
    build.accuracy = metrics


def finalize(build) -> None:
    """accuracy.json, then the manifest last: it lists every file with bytes and sha256."""
    write_json(build.staging / "accuracy.json", build.accuracy)
    build.manifest["accuracy"] = {k: build.accuracy[k] for k in (*ACCURACY_HEADLINE, "greedy_identical", "gate_failures")}
    build.manifest["quantization_gap"] = {k: build.golden.quantization_gap[k] for k in ACCURACY_HEADLINE}
    golden = build.golden
    build.manifest["golden"] = {
        "file": GOLDEN_FILE, "bytes": (build.staging / GOLDEN_FILE).stat().st_size, "eval_source": golden.eval_source,
        "positions": len(golden.ids) - 1, "references": {k: r.kind for k, r in golden.references.items()},
        "top_k": None if golden.references["full"].kind == "full" else golden.references["full"].topk_ids.shape[1],
        "prompts": len(golden.prompts), "greedy_tokens": golden.greedy_tokens,
        "latency_prompt_tokens": len(golden.latency_prompt)}
    build.manifest["timings_s"] = dict(build.timings)
    build.manifest["files"] = [file_entry(p, build.staging) for p in sorted(build.staging.iterdir()) if p.is_file()]
    write_json(build.staging / "manifest.json", build.manifest)
