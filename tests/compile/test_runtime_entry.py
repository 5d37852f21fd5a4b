"""The manifest's runtime entry and model card: what an app needs, from the files the source carries."""

import json
from types import SimpleNamespace

from llamaport.compile.model_card import render_model_card
from llamaport.compile.pipeline import DEFAULT_MODEL
from llamaport.compile.runtime_entry import runtime_entry
from llamaport.quantize import RECIPES


def _build(tmp_path, recipe_id, files):
    staging = tmp_path / "staging"
    (staging / "model").mkdir(parents=True)
    for name, text in files.items():
        (staging / "model" / name).write_text(text)
    ckpt = SimpleNamespace(tokenizer=SimpleNamespace(kind="hf_json"))
    exported = SimpleNamespace(files=[staging / "model" / n for n in files if n.startswith("model.")])
    return SimpleNamespace(recipe=RECIPES[recipe_id], staging=staging, exported=exported, checkpoint=ckpt)


def test_an_instruct_sources_chat_template_and_sampling_defaults_are_named(tmp_path):
    build = _build(tmp_path, "ortgenai-cpu-8da4w-g32", {
        "model.onnx": "", "model.onnx.data": "", "genai_config.json": "{}", "tokenizer.json": "{}",
        "tokenizer_config.json": json.dumps({"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}),
        "generation_config.json": json.dumps({"do_sample": True, "temperature": 0.6, "top_p": 0.9, "bos_token_id": 1})})
    entry = runtime_entry(build)
    assert entry.chat_template == "model/tokenizer_config.json"
    assert entry.generation_defaults == {"do_sample": True, "temperature": 0.6, "top_p": 0.9}
    assert entry.artifact_files == ("model/model.onnx", "model/model.onnx.data")
    assert entry.app_config == "model/genai_config.json" and entry.tokenizer == "model/tokenizer.json"
    assert entry.min_runtime.startswith("onnxruntime-genai>=") and entry.runners == ("onnxruntime-genai", "onnxruntime")


def test_a_base_model_has_no_chat_template_and_a_jinja_file_counts_as_one(tmp_path):
    base = runtime_entry(_build(tmp_path / "a", "et-xnnpack-fp32", {"model.pte": "", "tokenizer.json": "{}"}))
    assert base.chat_template is None and base.generation_defaults == {} and base.app_config is None
    jinja = runtime_entry(_build(tmp_path / "b", "et-xnnpack-fp32", {"model.pte": "", "chat_template.jinja": "x"}))
    assert jinja.chat_template == "model/chat_template.jinja"


def test_the_model_card_carries_hugging_face_metadata_and_the_accuracy_table(bundle):
    m = bundle(DEFAULT_MODEL, "et-xnnpack-8da4w-g32").manifest
    card = render_model_card(m)
    front = card.split("---")[1]
    assert "library_name: executorch" in front and "base_model: default_model" in front
    assert "recipe: et-xnnpack-8da4w-g32" in front and "scheme: 8da4w-g32" in front
    assert f"| same-top-1 % | {m.accuracy.vs_full.same_top1_pct:.4g} | {m.accuracy.quantization_gap.same_top1_pct:.4g} |" in card
    assert (bundle(DEFAULT_MODEL, "et-xnnpack-8da4w-g32").bundle / "README.md").read_text() == card
