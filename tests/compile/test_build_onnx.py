"""ONNX bundles end to end: onnxruntime-genai's layout (its model builder) and the Hugging Face ONNX layout
(optimum's exporter), fp32 and quantized by onnxruntime's quantizers, each built once per session."""

import json

import numpy as np
import pytest

from llamaport.compile.pipeline import DEFAULT_MODEL

LAYOUTS = ("ortgenai-cpu", "onnx-cpu")


def _vs_full(build):
    return build.accuracy_detail["vs_full"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("fmt", ["hf", pytest.param("meta", marks=pytest.mark.slow),
                                 pytest.param("llama2c-legacy", marks=pytest.mark.slow)])
def test_fp32_onnx_bundles_match_the_full_model_greedily(layout, fmt, sources, bundle):
    acc = _vs_full(bundle(sources[fmt], f"{layout}-fp32"))
    assert acc["greedy_tokens"] == 64
    assert acc["greedy_match_lengths"] == [64, 64, 64] and acc["greedy_identical"]
    assert acc["same_top1_pct"] == 100.0 and acc["kld_mean"] < 1e-6 and acc["max_abs_logit_error"] < 1e-3


def test_onnxruntime_genai_loads_the_app_folder_unmodified_and_generates_the_full_models_text(bundle, default_checkpoint):
    """What an app does with onnxruntime-genai's API: og.Model on model/, its tokenizer told to add BOS (as the
    manifest says), greedy search to EOS or the length."""
    import onnxruntime_genai as og
    from tokenizers import Tokenizer

    from llamaport.compile.reference import full_model, greedy_tokens

    build = bundle(DEFAULT_MODEL, "ortgenai-cpu-fp32")
    folder = build.bundle / "model"
    assert 'add_special_tokens="true"' in build.manifest.runtime.bos
    model = og.Model(str(folder))
    tokenizer = og.Tokenizer(model)
    tokenizer.update_options(add_special_tokens="true")
    prompt = "Once upon a time, there was a little cat named Tom."
    ids = list(tokenizer.encode(prompt))
    assert ids[0] == build.manifest.model.bos_id
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + 24, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    generated = []
    while not generator.is_done():
        generator.generate_next_token()
        generated.append(int(generator.get_next_tokens()[0]))
    text = tokenizer.decode(generated)
    expected = greedy_tokens(full_model(default_checkpoint), ids, 24)
    assert generated == expected
    assert text == Tokenizer.from_file(str(folder / "tokenizer.json")).decode(expected) and len(text) > 60


def test_og_tokenizer_encodes_the_golden_prompts_to_the_golden_ids(bundle):
    """The ids a device was judged on are the ids an app gets from onnxruntime-genai's own tokenizer, BOS
    included, once it is told to add special tokens (0.15.2 creates it with add_special_tokens=false)."""
    import onnxruntime_genai as og

    build = bundle(DEFAULT_MODEL, "ortgenai-cpu-fp32")
    tokenizer = og.Tokenizer(og.Model(str(build.bundle / "model")))
    without = [list(tokenizer.encode(t)) for t in build.golden.prompt_texts]
    tokenizer.update_options(add_special_tokens="true")
    golden = build.golden
    assert [list(tokenizer.encode(t)) for t in golden.prompt_texts] == golden.prompts
    assert list(tokenizer.encode(golden.latency_prompt_text)) == golden.latency_prompt
    assert without == [p[1:] for p in golden.prompts]  # the default: no BOS, the reason the option is needed


def test_genai_bundle_holds_the_model_its_config_and_the_tokenizer(bundle):
    import onnx

    build = bundle(DEFAULT_MODEL, "ortgenai-cpu-8da4w-g32")
    m = build.manifest
    assert {f.path for f in m.app_files()} == {"model/model.onnx", "model/model.onnx.data", "model/genai_config.json",
                                               "model/tokenizer.json", "model/tokenizer_config.json",
                                               "model/generation_config.json"}
    assert m.runtime.layout == "onnxruntime-genai" and m.runtime.artifact_files == ("model/model.onnx", "model/model.onnx.data")
    assert m.runtime.app_config == "model/genai_config.json"
    assert m.runtime.min_runtime == f"onnxruntime-genai>={m.versions['onnxruntime-genai']}"
    assert m.lowering.quantization["block_size"] == 32 and m.lowering.quantization["accuracy_level"] == 4
    config = json.loads((build.bundle / m.runtime.app_config).read_text())
    assert config["search"]["max_length"] == config["model"]["context_length"] == 256
    assert config["model"]["bos_token_id"] == 1 and config["model"]["eos_token_id"] == 2
    ops = {n.op_type for n in onnx.load(str(build.artifact), load_external_data=False).graph.node}
    assert {"MatMulNBits", "GroupQueryAttention"} <= ops and "MatMul" not in ops  # every linear is int4
    # per layer: q, k and v packed into one MatMul by the builder, o, gate, up, down; plus the output layer
    assert m.lowering.op_counts["MatMulNBits"] == 4 * 5 + 1 and "MatMul" not in m.lowering.op_counts


def test_int4_g32_keeps_top1_and_perplexity(bundle):
    build = bundle(DEFAULT_MODEL, "ortgenai-cpu-8da4w-g32")
    assert build.accuracy.vs_full.same_top1_pct >= 90.0 and build.accuracy.vs_full.ppl_ratio <= 1.05
    fp32 = bundle(DEFAULT_MODEL, "ortgenai-cpu-fp32")
    assert build.manifest.artifact_bytes() < 0.3 * fp32.manifest.artifact_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_4bit_embedding_is_block_quantized_and_keeps_top1(layout, bundle):
    import onnx

    build = bundle(DEFAULT_MODEL, f"{layout}-8da4w-g32-emb4g32")
    graph = onnx.load(str(build.artifact), load_external_data=False).graph
    assert [n.op_type for n in graph.node if "embed_tokens" in n.name] == ["GatherBlockQuantized"]
    assert build.accuracy.vs_full.same_top1_pct >= 90.0 and build.accuracy.vs_full.ppl_ratio <= 1.05
    body_only = bundle(DEFAULT_MODEL, f"{layout}-8da4w-g32")
    fp32_table, int4_table = 512 * 128 * 4, 512 * 128 * (0.5 + 4 / 32)  # 4-bit codes and an fp32 scale per 32
    assert body_only.manifest.artifact_bytes() - build.manifest.artifact_bytes() == pytest.approx(
        fp32_table - int4_table, rel=0.1)


@pytest.mark.slow
def test_weight_only_int4_has_no_lowering_gap_against_its_dequantized_weights(bundle):
    """4w computes in fp32 (accuracy level 1): the bundle and its dequantized reference are the same numbers,
    so the whole gap to the full model is weight rounding. This also proves the dequantizer reads MatMulNBits right."""
    detail = bundle(DEFAULT_MODEL, "ortgenai-cpu-4w-g32").accuracy_detail
    assert detail["lowering_gap"]["max_abs_logit_error"] < 1e-3 and detail["lowering_gap"]["same_top1_pct"] == 100.0
    assert detail["vs_full"]["kld_mean"] > 100 * detail["lowering_gap"]["kld_mean"]


def test_hf_layout_loads_in_optimum_and_generates_what_our_runner_does(bundle):
    import torch
    from optimum.onnxruntime import ORTModelForCausalLM

    from llamaport.runtime_tests.device.timing import greedy
    from llamaport.runtime_tests.device_job import load_model

    build = bundle(DEFAULT_MODEL, "onnx-cpu-8da4w-g32")
    model = ORTModelForCausalLM.from_pretrained(str(build.bundle / "model"))
    prompt = build.golden.prompts[0]
    out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                         max_new_tokens=20, do_sample=False, min_new_tokens=20)
    ours = greedy(load_model("onnxruntime", build.bundle, build.manifest.runtime, build.manifest.model), prompt, 20)
    assert out[0, len(prompt):].tolist() == ours
    assert build.accuracy.vs_full.same_top1_pct >= 90.0 and build.accuracy.vs_full.ppl_ratio <= 1.05


def test_dynamic_int8_uses_integer_matmuls_and_keeps_top1(bundle):
    build = bundle(DEFAULT_MODEL, "onnx-cpu-8da8w")
    assert build.manifest.lowering.op_counts["MatMulInteger"] == 4 * 7 + 1  # every linear of 4 layers and the output
    assert build.accuracy.vs_full.same_top1_pct >= 95.0 and build.accuracy.vs_full.ppl_ratio <= 1.02


def test_onnxruntime_rtn_crashes_on_an_odd_block_count_so_such_recipes_are_refused(tmp_path, bundle):
    """The guard exists because the crash does: onnxruntime's asymmetric RTN on a layer of 128 inputs in
    blocks of 128. If onnxruntime fixes it, this test says so and the guard can go."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer, RTNWeightOnlyQuantConfig

    fp32 = bundle(DEFAULT_MODEL, "onnx-cpu-fp32").artifact
    quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32)), block_size=128, is_symmetric=False,
                                     algo_config=RTNWeightOnlyQuantConfig())
    with pytest.raises(ValueError, match="cannot reshape"):
        quantizer.process()


@pytest.mark.slow
def test_even_block_rtn_and_hqq_build_and_keep_top1(bundle):
    for recipe in ("onnx-cpu-4w-g32-rtn", "onnx-cpu-8da4w-g32-hqq"):
        acc = bundle(DEFAULT_MODEL, recipe).accuracy.vs_full
        assert acc.same_top1_pct >= 90.0 and acc.ppl_ratio <= 1.05, recipe


def test_a_quantized_model_never_points_at_its_sources_data_file(tmp_path):
    """The source model keeps its weights in an external data file; the quantized copy must not refer to it."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from llamaport.quantize import resolve_scheme
    from llamaport.quantize.onnx_files import external_data_files, save_self_contained
    from llamaport.quantize.onnx_map import quantize_onnx

    rng = np.random.default_rng(0)
    w = rng.standard_normal((256, 128)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "norm"], ["h"]), helper.make_node("MatMul", ["h", "w"], ["y"], name="/lm_head/MatMul")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 128])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.ones(256, np.float32) * 0.5, "norm")])
    src = tmp_path / "src"
    src.mkdir()
    save_self_contained(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src / "model.onnx")
    dst = tmp_path / "dst"
    dst.mkdir()
    quantize_onnx(src / "model.onnx", dst / "model.onnx", resolve_scheme("4w-g32"))
    (src / "model.onnx.data").unlink()  # the source's weights are gone: the copy must not need them
    assert external_data_files(dst / "model.onnx") == {"model.onnx.data"}
    x = rng.standard_normal((1, 256)).astype(np.float32)
    y = ort.InferenceSession(str(dst / "model.onnx")).run(None, {"x": x})[0]
    assert np.abs(y - (x * 0.5) @ w).max() < 0.1 * np.abs((x * 0.5) @ w).max()


def test_a_model_pointing_outside_its_folder_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from llamaport.errors import ConfigError
    from llamaport.quantize.onnx_files import external_data_files

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "weights.bin").write_bytes(np.zeros(4, np.float32).tobytes())
    tensor = onnx.TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "../elsewhere/weights.bin"), ("offset", "0"), ("length", "16")):
        tensor.external_data.add(key=key, value=value)
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [tensor])
    (tmp_path / "bundle").mkdir()
    onnx.save(helper.make_model(graph), str(tmp_path / "bundle" / "model.onnx"))
    with pytest.raises(ConfigError, match="points outside the model's folder"):
        external_data_files(tmp_path / "bundle" / "model.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_llama32_shaped_model_with_tied_embeddings_and_rope_scaling_exports_exactly(layout, tiny_random_hf, bundle):
    """Llama 3.2's features (tied embeddings, GQA, llama3 RoPE scaling) survive both ONNX exporters. Random
    weights make top-1 fragile (near-ties), so fp32 is held to the logits."""
    acc = bundle(tiny_random_hf, f"{layout}-fp32").accuracy.vs_full
    assert acc.kld_mean < 1e-6 and acc.max_abs_logit_error < 1e-3
