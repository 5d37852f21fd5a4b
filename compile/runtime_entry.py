"""The manifest's runtime entry: what an app needs to load model/ with its runtime as it is."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from llamaport.runtime_tests.manifest import APP_FOLDER, RuntimeEntry

# How each layout's runtime API gets BOS first (the golden ids start with it).
BOS = {
    "executorch-pte": "TextLLMRunner / LlmModule: GenerationConfig(num_bos=1); the tokenizer's encode(text, bos=1)",
    # onnxruntime-genai 0.15.2 creates every tokenizer with add_special_tokens=false, whatever the tokenizer
    # files say (src/models/model.cpp since v0.11); with the option set, the post-processor's BOS is added.
    # Can go when an onnxruntime-genai release reads add_special_tokens from the bundle's tokenizer files
    # (the og.Tokenizer golden-ids test in tests/compile/test_build_onnx.py then passes without the option).
    "onnxruntime-genai": 'og.Tokenizer(model).update_options(add_special_tokens="true") before encode',
    "huggingface-onnx": "transformers' AutoTokenizer adds it (the tokenizer's post-processor)",
}
# Sampling settings an app should start from, where the source states them.
GENERATION_KEYS = ("do_sample", "temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens")


def _generation_defaults(model_dir: Path) -> dict:
    path = model_dir / "generation_config.json"
    if not path.is_file():
        return {}
    config = json.loads(path.read_text(encoding="utf-8"))
    return {k: config[k] for k in GENERATION_KEYS if k in config}


def _chat_template(model_dir: Path) -> str | None:
    if (model_dir / "chat_template.jinja").is_file():
        return f"{APP_FOLDER}/chat_template.jinja"
    config = model_dir / "tokenizer_config.json"
    if config.is_file() and json.loads(config.read_text(encoding="utf-8")).get("chat_template"):
        return f"{APP_FOLDER}/tokenizer_config.json"
    return None


def runtime_entry(build) -> RuntimeEntry:
    from llamaport.compile.tokenizer_files import bundle_tokenizer_path

    caps = build.recipe.capabilities
    model_dir = build.staging / APP_FOLDER
    names = [f.name for f in build.exported.files]
    artifact = [n for n in names if n == caps.artifact or n in caps.extra_artifacts
                or (caps.artifact_data and n == caps.artifact + ".data")]

    def present(name: str | None) -> str | None:
        return f"{APP_FOLDER}/{name}" if name and (model_dir / name).is_file() else None
    return RuntimeEntry(
        runtime=caps.runtime, layout=caps.layout, model=f"{APP_FOLDER}/{caps.artifact}",
        artifact_files=tuple(f"{APP_FOLDER}/{n}" for n in artifact), tokenizer=bundle_tokenizer_path(build.checkpoint),
        load_with=caps.load_with, min_runtime=f"{caps.runtime_package}>={metadata.version(caps.runtime_package)}",
        runners=caps.runners, bos=BOS[caps.layout],
        app_config=present(caps.app_config), tokenizer_config=present("tokenizer_config.json"),
        generation_config=present("generation_config.json"), chat_template=_chat_template(model_dir),
        generation_defaults=_generation_defaults(model_dir))
