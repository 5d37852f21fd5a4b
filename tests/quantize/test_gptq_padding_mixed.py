"""Issue 12's accuracy tools: padding any layer width to whole groups (exact), GPTQ's grid (lower layer error
than rounding, written into the bundle as chosen), and mixed-precision plans (ids, refusals, manifest)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llamaport.errors import ConfigError
from llamaport.quantize import resolve_recipe, resolve_scheme
from llamaport.quantize.gptq import HessianRecorder, gptq, rtn
from llamaport.quantize.schemes import LinearQuant, QuantScheme


def _layer_error(x, w, wq):
    return float(((x @ w.T - x @ wq.T) ** 2).mean())


@pytest.mark.parametrize("rule", ["hqq", "mlas"])
def test_gptq_has_lower_layer_error_than_rounding_on_the_same_grid(rule):
    torch.manual_seed(0)
    x = torch.randn(2048, 384) @ (torch.randn(384, 384) * 0.1) + torch.randn(2048, 384)  # correlated inputs
    w = torch.randn(96, 384) * 0.05
    linear = torch.nn.Linear(384, 96, bias=False)
    recorder = HessianRecorder({"l": linear})
    linear(x[:1024])
    linear(x[1024:].unsqueeze(0))  # any leading shape: rows are positions
    hessian = recorder.close()["l"]
    torch.testing.assert_close(hessian, x.double().T @ x.double())
    linear(x[:8])
    assert torch.equal(recorder.sums["l"], hessian)  # closed: no more recording
    for group in (32, 128, 384):
        rounded, chosen = rtn(w, 4, group, rule), gptq(w, hessian, 4, group, rule)
        assert chosen.codes.min() >= -8 and chosen.codes.max() <= 7
        assert _layer_error(x, w, chosen.dequantize()) < 0.8 * _layer_error(x, w, rounded.dequantize())
    # GPTQ at group 128 beats rounding at group 32 on the layer's own objective
    assert _layer_error(x, w, gptq(w, hessian, 4, 128, rule).dequantize()) < _layer_error(x, w, rtn(w, 4, 32, rule).dequantize())


def test_mlas_rule_is_onnxruntimes_own_rounding():
    """Our "mlas" rounding of fp32 weights gives the codes and scales onnxruntime's quantizer writes."""

    from llamaport.quantize.onnx_dequantize import dequantize_matmul_nbits

    torch.manual_seed(1)
    w = torch.randn(64, 96)
    grid = rtn(w, 4, 32, "mlas")
    b, scales = _ort_quantize(w.T.numpy(), 32)
    ours = grid.dequantize().numpy()
    theirs = dequantize_matmul_nbits(b, scales, None, 96, 64, 4, 32).T
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def _ort_quantize(w_kn: np.ndarray, block: int):
    """onnxruntime's MatMulNBitsQuantizer on a one-MatMul model: its packed B and scales."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    k, n = w_kn.shape
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
                              [numpy_helper.from_array(w_kn.astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    q = MatMulNBitsQuantizer(model, bits=4, block_size=block, is_symmetric=True)
    q.process()
    inits = {t.name: numpy_helper.to_array(t) for t in q.model.model.graph.initializer}
    node = next(nd for nd in q.model.model.graph.node if nd.op_type == "MatMulNBits")
    assert onnx.helper.get_attribute_value(next(a for a in node.attribute if a.name == "K")) == k
    return inits[node.input[1]], inits[node.input[2]]


@pytest.mark.parametrize("bits", [4, 8])
def test_grids_written_into_matmul_nbits_read_back_exactly(bits):
    """quantize.onnx_grid writes GPTQ's (or an 8-bit unit's) codes in MatMulNBits' layout: what onnxruntime
    dequantizes is the grid, and K = 96 (not a multiple of 64) is padded as MatMulNBits pads it."""
    from onnx import numpy_helper

    from llamaport.quantize.onnx_dequantize import dequantize_matmul_nbits
    from llamaport.quantize.onnx_grid import write_grids

    torch.manual_seed(2)
    w = torch.randn(48, 96)
    b, scales = _ort_quantize(w.T.numpy(), 64)
    model = _one_matmul_nbits(b, scales, k=96, n=48, block=64)
    grid = rtn(w, bits, 64, "mlas")
    assert write_grids(model, {"/lm_head/MatMul": grid}) == ["/lm_head/MatMul"]
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    node = model.graph.node[0]
    got = dequantize_matmul_nbits(inits[node.input[1]], inits[node.input[2]], None, 96, 48, bits, 64).T
    np.testing.assert_array_equal(got, grid.dequantize()[:, :96].numpy())
    with pytest.raises(ValueError, match="no MatMulNBits node"):
        write_grids(model, {"/model/layers.9/mlp/down_proj/MatMul": grid})


def _one_matmul_nbits(b, scales, k, n, block):
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node("MatMulNBits", ["x", "B", "S"], ["y"], name="/lm_head/MatMul_Q4", domain="com.microsoft",
                            K=k, N=n, bits=4, block_size=block, accuracy_level=4)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
                              [numpy_helper.from_array(b, "B"), numpy_helper.from_array(scales, "S")])
    return helper.make_model(graph)


def test_padding_to_whole_groups_is_exact_in_fp32(smollm_shaped):
    """Every linear of a SmolLM-135M-shaped model padded for group 128 (576 -> 640 inputs): the same logits."""
    from llamaport.compile.exporters.executorch import eager_llama
    from llamaport.compile.sources import load_checkpoint
    from llamaport.quantize.torchao_map import PaddedInputLinear, layer_settings, pad_for_groups_

    ckpt = load_checkpoint(smollm_shaped)
    plain, padded = eager_llama(ckpt, 64, True), eager_llama(ckpt, 64, True)
    widths = pad_for_groups_(padded, layer_settings(padded, resolve_scheme("8da4w-g128")))
    assert set(widths.values()) == {640}
    assert len(widths) == 2 * 6 + 1  # q, k, v, gate, up per layer (o: 576 from 9 x 64) ... and the output layer
    assert isinstance(padded.get_submodule("layers.0.attention.wq"), PaddedInputLinear)
    assert not isinstance(padded.get_submodule("layers.0.feed_forward.w2"), PaddedInputLinear)  # 1536 = 12 x 128
    ids = torch.randint(3, 500, (1, 48))
    with torch.no_grad():
        a, b = plain(ids), padded(ids)
    assert float((a - b).abs().max()) < 1e-4 * float(a.abs().max())


def test_keep8_and_gptq_ids_say_what_the_scheme_does():
    s = resolve_scheme("8da4w-g128-gptq-keep8x2")
    assert (s.linear, s.keep8, s.calibrated, s.static) == (LinearQuant("8da4w", 128, "gptq"), 2, True, False)
    assert s.linear.eight_bit == LinearQuant("8da8w")
    assert resolve_scheme("8da4w-g128").calibrated is False
    assert resolve_recipe("et-xnnpack-8da4w-g128-emb4g32").scheme.embedding.group_size == 32
    with pytest.raises(ConfigError, match="not 4-bit"):
        QuantScheme(LinearQuant("8da8w"), keep8=2)
    with pytest.raises(ConfigError, match="0 or more"):
        QuantScheme(LinearQuant("8da4w", 32), keep8=-1)
    for recipe in ("onnx-cpu-8da4w-g128-gptq", "et-vulkan-8da4w-g32-keep8x2"):
        with pytest.raises(ConfigError):
            resolve_recipe(recipe)


def test_a_memo_shared_across_plans_changes_no_plan(default_checkpoint):
    """The tuner plans many recipes with one PlanMemo: each plan must be what a fresh plan gives, and the memo
    must hold one sensitivity per unit and one Hessian per linear, whatever the number of plans."""
    from llamaport.compile.quant_plan import PlanMemo, build_plan

    windows = torch.randint(3, 500, (4, 32), generator=torch.Generator().manual_seed(0)).tolist()
    from llamaport.quantize.plan import hf_linears

    memo, gptq_linears = PlanMemo(), set()
    for recipe in ("8da4w-g32-gptq-keep8x1", "8da4w-g32-keep8x4", "8da4w-g32-gptq-keep8x2"):
        scheme = resolve_scheme(recipe)
        shared, fresh = build_plan(default_checkpoint, scheme, windows, "executorch", memo), \
            build_plan(default_checkpoint, scheme, windows, "executorch")
        gptq_linears |= {n for u in shared.units if u.quant.algorithm == "gptq" for n in hf_linears(u.unit)}
        assert shared.units == fresh.units
        assert shared.grids.keys() == fresh.grids.keys()
        for name, grid in shared.grids.items():
            assert torch.equal(grid.codes, fresh.grids[name].codes) and torch.equal(grid.scales, fresh.grids[name].scales)
    n_layers = default_checkpoint.config["num_hidden_layers"]
    assert len(memo.kld) == 5 * n_layers + 1  # one per unit, not one per unit per plan
    assert set(memo.hessians) == gptq_linears and len(gptq_linears) > 6 * n_layers
