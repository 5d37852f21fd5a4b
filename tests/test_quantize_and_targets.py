"""Schemes, recipes and targets as data: generated ids, refusals that list the known names, TOML."""

import pytest

from llamaport_errors import ConfigError
from quantize import RECIPES, SCHEMES, EmbeddingQuant, LinearQuant, QuantScheme, Recipe, check_recipe_runs_on
from targets import BUILTIN_TARGETS, Gate, Target, load_targets


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


def test_group_size_must_divide_every_layer_width():
    from quantize.torchao_map import check_group_sizes

    scheme = QuantScheme(LinearQuant("8da4w", 128))
    check_group_sizes(scheme, {"linear": [256, 384], "output": [256]})
    with pytest.raises(ConfigError, match="input width 96, not a multiple of group size 128"):
        check_group_sizes(scheme, {"linear": [256, 96]})


def test_target_refuses_schemes_it_cannot_run():
    target = Target(name="npu", os="android", arch="arm64", runtime="executorch", backends=("xnnpack",),
                    linear_schemes=("fp32", "8w"), memory_budget_mb=512, default_context_len=256)
    check_recipe_runs_on(RECIPES["et-xnnpack-8w"], target)
    with pytest.raises(ConfigError, match=r"cannot run \['8da4w'\]"):
        check_recipe_runs_on(RECIPES["et-xnnpack-8da4w-g32"], target)


def test_xnnpack_refuses_what_executorch_cannot_lower_correctly():
    phone = BUILTIN_TARGETS["android-arm64-xnnpack"]
    with pytest.raises(ConfigError, match=r"cannot run \['4w'\]"):
        check_recipe_runs_on(RECIPES["et-xnnpack-4w-g32"], phone)
    mixed = Recipe(QuantScheme(LinearQuant("8da4w", 32), output=LinearQuant("8w")))
    with pytest.raises(ConfigError, match="mixes 8w with dynamically quantized"):
        check_recipe_runs_on(mixed, phone)


def test_builtin_targets_round_trip_and_have_a_floor():
    assert {"android-arm64-xnnpack", "ios-arm64-xnnpack", "linux-x86_64-xnnpack"} <= set(BUILTIN_TARGETS)
    for t in BUILTIN_TARGETS.values():
        assert Target.from_dict(t.to_dict()) == t
        assert {g.metric for g in t.gates} == {"same_top1_pct", "ppl_ratio"}


def test_user_targets_from_toml(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[[target]]\nname = "rpi5-xnnpack"\nos = "linux"\narch = "arm64"\nruntime = "executorch"\n'
                    'backends = ["xnnpack", "portable"]\nlinear_schemes = ["fp32", "8da4w"]\nmemory_budget_mb = 4096\n'
                    'default_context_len = 1024\nmemory_bandwidth_gb_s = 17.0\n'
                    'gates = [{metric = "same_top1_pct", min = 92.0}, {metric = "decode_tokens_per_s", min = 20.0}]\n')
    t = load_targets(path)["rpi5-xnnpack"]
    assert t.gates == (Gate("same_top1_pct", min=92.0), Gate("decode_tokens_per_s", min=20.0))
    assert t.default_context_len == 1024 and t.memory_bandwidth_gb_s == 17.0
    path.write_text('[[target]]\nname = "x"\ncolour = "red"\n')
    with pytest.raises(ConfigError, match="unknown keys \\['colour'\\]"):
        load_targets(path)


def test_gate_reports_how_far_it_was_missed():
    assert Gate("same_top1_pct", min=90.0).missed_by(85.5) == pytest.approx(4.5)
    assert Gate("ppl_ratio", max=1.05).missed_by(1.02) is None
    with pytest.raises(ConfigError):
        Gate("speed", min=1.0)


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
    from quantize import resolve_recipe

    for name in ("android-arm64-ort", "ios-arm64-ort", "linux-x86_64-ort"):
        target = BUILTIN_TARGETS[name]
        assert target.runtime == "onnxruntime" and target.default_recipe == "ortgenai-cpu-8da4w-g32"
        check_recipe_runs_on(resolve_recipe(target.default_recipe), target)
        check_recipe_runs_on(RECIPES["onnx-cpu-8da8w"], target)
        with pytest.raises(ConfigError, match="builds for executorch"):
            check_recipe_runs_on(RECIPES["et-xnnpack-8da4w-g32"], target)


def test_rtn_block_counts_must_be_even():
    from quantize.onnx_map import check_block_counts

    check_block_counts(SCHEMES["4w-g32-rtn"], {"linear": [128, 384], "output": [128]})
    check_block_counts(SCHEMES["4w-g128"], {"linear": [128]})  # the default quantizer packs per row: no limit
    with pytest.raises(ConfigError, match=r"384 split into 3 blocks of 128.*\(16, 32, 64\)"):
        check_block_counts(SCHEMES["8da4w-g128-rtn"], {"linear": [256, 384]})
