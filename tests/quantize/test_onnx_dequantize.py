"""The ONNX quantized reference's dequantizer: streamed to its own data file, the same numbers as the
quantized model computed in fp32 (accuracy level 0), and no reference to the source's weights."""

from __future__ import annotations

import numpy as np
import pytest


def _quantized_model(tmp_path, block_size: int = 32):
    """Mul -> MatMul(256 x 128) -> MatMul(128 x 64), weights external, quantized to int4 MatMulNBits."""
    from onnx import TensorProto, helper, numpy_helper

    from llamaport.quantize import resolve_scheme
    from llamaport.quantize.onnx_files import save_self_contained
    from llamaport.quantize.onnx_map import quantize_onnx

    rng = np.random.default_rng(0)
    w1, w2 = rng.standard_normal((256, 128)).astype(np.float32), rng.standard_normal((128, 64)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "norm"], ["h"]), helper.make_node("MatMul", ["h", "w1"], ["a"], name="/up/MatMul"),
         helper.make_node("MatMul", ["a", "w2"], ["y"], name="/lm_head/MatMul")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
         numpy_helper.from_array(rng.standard_normal(256).astype(np.float32), "norm")])
    (tmp_path / "src").mkdir()
    (tmp_path / "q").mkdir()
    save_self_contained(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "src" / "model.onnx")
    quantize_onnx(tmp_path / "src" / "model.onnx", tmp_path / "q" / "model.onnx", resolve_scheme(f"4w-g{block_size}"))
    return tmp_path / "q" / "model.onnx", rng.standard_normal((1, 256)).astype(np.float32)


def test_dequantized_model_computes_what_the_int4_model_computes_in_fp32(tmp_path):
    import onnx
    import onnxruntime as ort

    from llamaport.quantize.onnx_dequantize import write_dequantized
    from llamaport.quantize.onnx_files import external_data_files

    quantized, x = _quantized_model(tmp_path)
    (tmp_path / "out").mkdir()
    dst = write_dequantized(quantized, tmp_path / "out" / "model.onnx")
    graph = onnx.load(str(dst), load_external_data=False).graph
    assert sorted(n.op_type for n in graph.node) == ["MatMul", "MatMul", "Mul"]
    assert external_data_files(dst) == {"model.onnx.data"}
    # both fp32 weights are in the new data file (each page-aligned), nothing of the packed int4 codes
    assert (tmp_path / "out" / "model.onnx.data").stat().st_size == pytest.approx(4096 * 32 + 128 * 64 * 4, abs=4096)
    for t in graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            assert int(next(e.value for e in t.external_data if e.key == "offset")) % 4096 == 0
    y_int4 = ort.InferenceSession(str(quantized)).run(None, {"x": x})[0]  # accuracy level 1: fp32 arithmetic
    y_ref = ort.InferenceSession(str(dst)).run(None, {"x": x})[0]
    assert np.abs(y_ref - y_int4).max() < 1e-4 * np.abs(y_int4).max()


def test_a_weight_computed_in_the_graph_is_refused_by_name(tmp_path):
    import onnx

    from llamaport.quantize.onnx_dequantize import write_dequantized

    quantized, _ = _quantized_model(tmp_path)
    model = onnx.load(str(quantized), load_external_data=False)
    node = next(n for n in model.graph.node if n.op_type == "MatMulNBits")
    node.input[1] = "computed_b"
    onnx.save(model, str(quantized))
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match="'computed_b' is not an initializer"):
        write_dequantized(quantized, tmp_path / "out" / "model.onnx")
