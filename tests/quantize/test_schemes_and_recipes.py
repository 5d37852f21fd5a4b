"""Schemes, recipes and targets as data: generated ids, refusals that list the known names, TOML."""

import pytest

from llamaport.errors import ConfigError
from llamaport.quantize import RECIPES, SCHEMES, EmbeddingQuant, LinearQuant, QuantScheme, Recipe, check_recipe_runs_on
from llamaport.targets import BUILTIN_TARGETS, Target


def test_ids_are_generated_from_fields():
    assert QuantScheme(LinearQuant("8da4w", 32)).id == "8da4w-g32"
    assert QuantScheme(LinearQuant("8da4w", 32), output=LinearQuant("8da8w")).id == "8da4w-g32-out8da8w"
    assert QuantScheme(LinearQuant("8da4w", 32), embedding=EmbeddingQuant(4, 32)).id == "8da4w-g32-emb4g32"
    assert Recipe(QuantScheme(LinearQuant("8da4w", 32))).id == "et-xnnpack-8da4w-g32"
    assert all(RECIPES[rid].id == rid for rid in RECIPES) and all(SCHEMES[s].id == s for s in SCHEMES)
    assert {"et-xnnpack-fp32", "et-xnnpack-8w", "et-xnnpack-8da8w", "et-xnnpack-4w-g32",
            "et-xnnpack-8da4w-g32", "et-xnnpack-8da4w-g64", "et-xnnpack-8da4w-g128"} <= set(RECIPES)


def test_output_layer_follows_body_unless_set():
    s = QuantScheme(LinearQuant("8da4w", 64))
    assert s.output_quant == LinearQuant("8da4w", 64)
    assert QuantScheme(LinearQuant("8da4w", 64), output=LinearQuant("fp32")).output_quant.kind == "fp32"


@pytest.mark.parametrize("bad", [lambda: LinearQuant("3w"), lambda: LinearQuant("8da4w", 48),
                                 lambda: LinearQuant("fp32", 32), lambda: EmbeddingQuant(6)])
def test_invalid_schemes_are_refused(bad):
    with pytest.raises(ConfigError):
        bad()


def test_linears_of_any_width_are_padded_but_an_embedding_group_must_divide_its_rows():
    """Linears are padded to whole groups (quantize.torchao_map.PaddedInputLinear, exact); an embedding is a
    lookup table, so its group must divide the row width."""
    from llamaport.quantize.torchao_map import check_group_sizes

    scheme = QuantScheme(LinearQuant("8da4w", 128), embedding=EmbeddingQuant(4, 32))
    check_group_sizes(scheme, {"linear": [256, 96], "output": [96], "embedding": [256]})
    with pytest.raises(ConfigError, match="rows of width 48, not a multiple of group size 32"):
        check_group_sizes(scheme, {"linear": [256], "embedding": [48]})


def test_target_refuses_schemes_it_cannot_run():
    target = Target(name="small", os="android", arch="arm64", runtime="executorch", backends=("xnnpack", "portable"),
                    linear_schemes=("fp32", "8w"), memory_budget_mb=512, default_context_len=256)
    check_recipe_runs_on(RECIPES["et-xnnpack-8w"], target)
    with pytest.raises(ConfigError, match=r"cannot run \['8da4w'\]"):
        check_recipe_runs_on(RECIPES["et-xnnpack-8da4w-g32"], target)


def test_xnnpack_refuses_what_executorch_cannot_lower_correctly():
    phone = BUILTIN_TARGETS["android-arm64-xnnpack"]
    with pytest.raises(ConfigError, match=r"cannot run \['4w'\]"):
        check_recipe_runs_on(RECIPES["et-xnnpack-4w-g32"], phone)
    mixed = Recipe(QuantScheme(LinearQuant("8da4w", 32), output=LinearQuant("8w")))
    with pytest.raises(ConfigError, match="cannot be lowered: 8w together with 8da8w/8da4w"):
        check_recipe_runs_on(mixed, phone)


def test_an_unknown_recipe_names_close_matches_and_the_ids_the_target_runs():
    from llamaport.quantize import resolve_recipe

    with pytest.raises(ConfigError) as e:
        resolve_recipe("et-xnnpak-8da4w-g32", BUILTIN_TARGETS["linux-x86_64-xnnpack"])
    message = str(e.value)
    assert "did you mean 'et-xnnpack-8da4w-g32'" in message and "valid for target linux-x86_64-xnnpack:" in message
    listed = message.split("valid for target linux-x86_64-xnnpack: ")[1].split(", ")
    assert "et-xnnpack-8da4w-g32" in listed and not [r for r in listed if not r.startswith("et-xnnpack-")]
    assert "et-xnnpack-4w-g32" not in listed and len(listed) < len(RECIPES) / 2


def test_the_exporter_table_names_real_entry_points_and_imports_nothing_heavy():
    import importlib

    from llamaport.quantize.exporters import EXPORTERS

    for e in EXPORTERS.values():
        for dotted in (e.export, e.quantized_reference):
            module, _, name = dotted.partition(":")
            spec = importlib.util.find_spec(module)
            assert spec is not None and f"def {name}(" in open(spec.origin).read(), dotted
        assert e.artifact in ("model.pte", "model.onnx")
        # runners check the bundle on a device; only a backend no host runs (CoreML, Vulkan, QNN) has none
        from llamaport.targets.backends import BACKENDS
        assert bool(e.runners) == all(BACKENDS[b].not_runnable_here is None for b in e.backends), e.id
    assert {r.exporter for r in RECIPES.values()} == set(EXPORTERS)


def test_each_exporter_offers_only_the_schemes_it_can_express():
    assert {"ortgenai-cpu-fp32", "ortgenai-cpu-8da4w-g32", "ortgenai-cpu-4w-g128", "ortgenai-cpu-8da4w-g32-outfp32",
            "onnx-cpu-8da8w", "onnx-cpu-8da4w-g32-hqq", "onnx-cpu-4w-g32-rtn"} <= set(RECIPES)
    assert LinearQuant("4w", 32, "hqq").id == "4w-g32-hqq"
    # no per-channel int8 MatMul in the builder, no -rtn/-hqq rounding in torchao's path, no ONNX int8 embedding yet
    for missing in ("ortgenai-cpu-8da8w", "ortgenai-cpu-8da4w-g32-hqq", "et-xnnpack-8da4w-g32-hqq", "onnx-cpu-8da4w-g32-emb8"):
        assert missing not in RECIPES
    with pytest.raises(ConfigError, match="exporter ort-genai cannot build scheme 8da8w"):
        Recipe(QuantScheme(LinearQuant("8da8w")), "ort-genai", "cpu")


def test_ort_targets_run_onnx_recipes_and_default_to_genai_int4():
    from llamaport.quantize import resolve_recipe

    for name in ("android-arm64-ort", "ios-arm64-ort", "linux-x86_64-ort"):
        target = BUILTIN_TARGETS[name]
        assert target.runtime == "onnxruntime" and target.default_recipe == "ortgenai-cpu-8da4w-g32"
        check_recipe_runs_on(resolve_recipe(target.default_recipe), target)
        check_recipe_runs_on(RECIPES["onnx-cpu-8da8w"], target)
        with pytest.raises(ConfigError, match="builds for executorch"):
            check_recipe_runs_on(RECIPES["et-xnnpack-8da4w-g32"], target)


def test_rtn_block_counts_must_be_even():
    from llamaport.quantize.onnx_map import check_block_counts

    check_block_counts(SCHEMES["4w-g32-rtn"], {"linear": [128, 384], "output": [128]})
    check_block_counts(SCHEMES["4w-g128"], {"linear": [128]})  # the default quantizer packs per row: no limit
    with pytest.raises(ConfigError, match=r"384 split into 3 blocks of 128.*\(16, 32, 64\)"):
        check_block_counts(SCHEMES["8da4w-g128-rtn"], {"linear": [256, 384]})
