"""Large vocabularies: without --recipe, a CPU target's default quantizes an embedding whose fp32 table
exceeds the target's large_embedding_mb (4-bit in groups of 32, as ExecuTorch's XNNPACK Llama recipe),
and the manifest says which rule chose the recipe."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from llamaport.compile.checkpoint import expected_shapes, llama_config
from llamaport.compile.pipeline import DEFAULT_MODEL, BuildRequest, run_build
from llamaport.errors import ConfigError
from llamaport.targets import BUILTIN_TARGETS, Target

# SmolLM-135M's width (576, 9 heads of 64) with a 32,768-row table: 72 MB in fp32, above the 64 MB threshold
SHAPE = dict(vocab_size=32768, hidden_size=576, intermediate_size=256, num_hidden_layers=1, num_attention_heads=9,
             num_key_value_heads=3, max_position_embeddings=512, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)


@pytest.fixture(scope="module")
def large_vocab_model(tmp_path_factory):
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("large_vocab")
    cfg = llama_config(**SHAPE)
    gen = torch.Generator().manual_seed(0)
    save_file({n: torch.randn(s, generator=gen) * 0.02 for n, s in expected_shapes(cfg).items()},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({**SHAPE, "architectures": ["LlamaForCausalLM"]}))
    for name in ("tokenizer.json", "tokenizer_config.json"):  # ids only: the bundled 512-token tokenizer
        shutil.copyfile(DEFAULT_MODEL / name, folder / name)
    return folder


@pytest.mark.parametrize("target, default, large", [
    ("android-arm64-xnnpack", "et-xnnpack-8da4w-g32", "et-xnnpack-8da4w-g32-emb4g32"),
    ("linux-x86_64-ort", "ortgenai-cpu-8da4w-g32", "ortgenai-cpu-8da4w-g32-emb4g32")])
def test_a_large_table_gets_the_targets_large_embedding_recipe(target, default, large, large_vocab_model, tmp_path):
    assert BUILTIN_TARGETS[target].default_recipe == default
    build = run_build(BuildRequest(model=large_vocab_model, target=target, out=tmp_path / "b"), until="checkpoint")
    assert build.recipe.id == large and build.recipe.scheme.embedding.bits == 4
    assert build.recipe_chosen_by == (f"target {target}'s default for large embeddings: the fp32 table would be 72 MB "
                                      "(32768 x 576), above large_embedding_mb 64")
    small = run_build(BuildRequest(target=target, out=tmp_path / "c"), until="checkpoint")  # the bundled model: 128 KB
    assert small.recipe.id == default and small.recipe_chosen_by == f"target {target}'s default"


def test_an_explicit_recipe_is_kept_whatever_the_table(large_vocab_model, tmp_path):
    build = run_build(BuildRequest(model=large_vocab_model, recipe="et-xnnpack-8da4w-g32", out=tmp_path / "b"),
                      until="checkpoint")
    assert build.recipe.id == "et-xnnpack-8da4w-g32" and build.recipe_chosen_by == "--recipe"


def test_the_bundled_default_build_records_why_its_recipe(bundle):
    from llamaport.runtime_tests.manifest import Manifest

    build = bundle(DEFAULT_MODEL, "et-xnnpack-8da4w-g32")
    assert build.manifest.recipe.chosen_by == "--recipe"  # the test fixture names its recipe
    assert Manifest.read(build.bundle / "manifest.json").recipe.chosen_by == "--recipe"


def test_large_embedding_fields_go_together():
    base = BUILTIN_TARGETS["linux-x86_64-xnnpack"].to_dict()
    base.pop("schema_version")
    with pytest.raises(ConfigError, match="'large_embedding_recipe' and 'large_embedding_mb' go together"):
        Target.from_dict({k: v for k, v in base.items() if k != "large_embedding_recipe"})
    with pytest.raises(ConfigError, match="'large_embedding_mb' must be positive"):
        Target.from_dict({**base, "large_embedding_mb": 0})


def test_the_dry_run_plan_already_says_it_from_the_config(large_vocab_model, tmp_path):
    """`build --dry-run` reads no weights: config.json's vocab_size and hidden_size decide it there too."""
    from llamaport import api

    plan = api.plan(model=str(large_vocab_model), target="ios-arm64-xnnpack", out=str(tmp_path / "b"))
    assert plan["recipe"] == "et-xnnpack-8da4w-g32-emb4g32"
    assert plan["recipe_chosen_by"].startswith("target ios-arm64-xnnpack's default for large embeddings")
