"""Per-layer plans in real builds: any layer width (padding to whole groups), GPTQ grids and 8-bit units
chosen by sensitivity, for ExecuTorch and onnxruntime-genai, on a SmolLM-135M-shaped model (hidden 576,
which group 128 does not divide) and the bundled model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

PADDED_UNITS = {"attn.qkv", "attn.o", "mlp.gate", "mlp.up"}  # inputs 576 wide; mlp.down reads 1536 = 12 x 128

# Random weights have no accuracy to keep: these targets are the host's, with only a loose perplexity bound.
RANDOM_WEIGHT_TARGETS = """
[[target]]
name = "random-weights-xnnpack"
os = "linux"
arch = "x86_64"
runtime = "executorch"
backends = ["xnnpack", "portable"]
memory_budget_mb = 4096
default_context_len = 256
gates = [{metric = "ppl_ratio", max = 2.0}]

[[target]]
name = "random-weights-ort"
os = "linux"
arch = "x86_64"
runtime = "onnxruntime"
backends = ["cpu"]
memory_budget_mb = 4096
default_context_len = 256
gates = [{metric = "ppl_ratio", max = 2.0}]
"""


@pytest.fixture(scope="module")
def random_build(tmp_path_factory):
    """random_build(model, recipe) -> Build, once per module per key, for a random-weight target."""
    from llamaport.compile.pipeline import BuildRequest, run_build
    from llamaport.quantize import resolve_recipe

    root = tmp_path_factory.mktemp("random_builds")
    targets = root / "targets.toml"
    targets.write_text(RANDOM_WEIGHT_TARGETS)
    cache = {}

    def get(model, recipe):
        if (model, recipe) not in cache:
            target = {"executorch": "random-weights-xnnpack", "onnxruntime": "random-weights-ort"}[resolve_recipe(recipe).runtime]
            cache[model, recipe] = run_build(BuildRequest(model=model, recipe=recipe, target=target, out=root / f"b{len(cache)}",
                                                          targets_file=targets))
        return cache[model, recipe]
    return get


def _layers(build):
    return {layer.unit: layer for layer in build.manifest.lowering.layers}


def _check_padding_listed(build, body: str):
    layers = _layers(build)
    assert len(layers) == 2 * 5 + 1
    for unit, layer in layers.items():
        part = unit.split(".", 2)[-1]
        width = 576 if part in PADDED_UNITS or unit == "output" else 1536
        grouped = "-g128" in layer.quant  # per-channel 8-bit units (ExecuTorch's keep8) need no padding
        assert (layer.in_features, layer.padded_to) == (width, 640 if width == 576 and grouped else None), unit
        assert layer.quant in (body, "8da8w", "8da8w-g128")


@pytest.mark.parametrize("recipe", ["ortgenai-cpu-8da4w-g128", "ortgenai-cpu-8da4w-g128-gptq-keep8x2"])
def test_smollm_shaped_model_builds_at_group_128_for_onnx(smollm_shaped, random_build, recipe):
    """onnxruntime's MatMulNBits pads K itself; the manifest says which layers were padded. The tied output
    layer is untied for the builder, so the embedding stays the fp32 table the id promises."""
    build = random_build(smollm_shaped, recipe)
    body = recipe.removeprefix("ortgenai-cpu-").removesuffix("-keep8x2")
    _check_padding_listed(build, body)
    kept = [layer.unit for layer in build.manifest.lowering.layers if layer.quant == "8da8w-g128"]
    assert len(kept) == (2 if "keep8" in recipe else 0) and "output" not in kept  # tied: the output unit stays
    assert build.manifest.lowering.op_counts["MatMulNBits"] == 2 * 5 + 1
    gap = build.accuracy_detail["lowering_gap"]
    assert gap["kld_mean"] < 1e-3  # the artifact computes what its dequantized weights say


# slow: 84 s of GPTQ and an ExecuTorch export of its own on CI's 2 cores; the ONNX builds of the same shape stay
# in the default suite
@pytest.mark.slow
def test_smollm_shaped_gptq_mixed_precision_executorch_bundle(smollm_shaped, random_build):
    """Padding, GPTQ and two 8-bit units in one ExecuTorch build: every linear and every pad delegated to
    XNNPACK, the plan listed unit by unit, and the program computes GPTQ's grid (it agrees with the
    quantized reference that applies the plan far better than with plain rounding of the same scheme)."""
    from llamaport.compile.exporters.executorch import quantized_eager
    from llamaport.quantize import resolve_scheme
    from llamaport.runtime_tests.device.drivers.executorch_runtime import ExecuTorchModel

    build = random_build(smollm_shaped, "et-xnnpack-8da4w-g128-gptq-keep8x2")
    _check_padding_listed(build, "8da4w-g128-gptq")
    layers = _layers(build)
    kept = [u for u, layer in layers.items() if layer.quant == "8da8w"]
    assert len(kept) == 2
    ranked = sorted(layers, key=lambda u: layers[u].kld_alone or 0.0, reverse=True)
    assert set(kept) == set(ranked[:2]) and all(layers[u].kld_alone > 0 for u in ranked[:2])
    lowering = build.manifest.lowering
    assert lowering.calibration.samples == 16 and lowering.calibration.source.endswith("calibration.txt")
    delegation = lowering.delegation
    assert delegation.delegated_ops.get("aten_linear_default") == 2 * 7 + 1
    assert "aten_linear_default" not in delegation.non_delegated_ops
    assert "aten_constant_pad_nd_default" not in delegation.non_delegated_ops

    ids = build.eval_set.ids[:48]
    program = torch.from_numpy(np.asarray(ExecuTorchModel(build.bundle / "model" / "model.pte").teacher_forced_logits(ids)))
    scheme = resolve_scheme("8da4w-g128-gptq-keep8x2")
    with torch.no_grad():
        planned = quantized_eager(build.checkpoint, scheme, 256, True, plan=build.quant_plan)(torch.tensor([ids]))[0]
        rounded = quantized_eager(build.checkpoint, resolve_scheme("8da4w-g128"), 256, True)(torch.tensor([ids]))[0]
    assert float((program - planned).abs().max()) < 0.1 * float((program - rounded).abs().max())


def test_calibrated_cpu_recipes_refuse_eval_text_as_calibration(tmp_path):
    from llamaport.compile.eval_data import DEFAULT_EVAL_TEXT
    from llamaport.compile.pipeline import DEFAULT_MODEL, BuildRequest, run_build
    from llamaport.errors import ConfigError

    with pytest.raises(ConfigError, match="is the eval text"):
        run_build(BuildRequest(model=DEFAULT_MODEL, recipe="et-xnnpack-8da4w-g128-gptq", out=tmp_path / "b",
                               calibration_text=DEFAULT_EVAL_TEXT), until="plan")
    assert not (tmp_path / "b").exists()
