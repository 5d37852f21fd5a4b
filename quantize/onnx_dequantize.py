"""A quantized ONNX model with its quantized weights turned back into fp32: each MatMulNBits, and each
dynamic-int8 MatMulInteger chain, becomes a plain MatMul over the dequantized weight. Run on onnxruntime
it is the ONNX counterpart of ExecuTorch's quantized eager model: the bundle's own rounded weights in fp32
arithmetic. Full model vs it is the quantization gap (weight rounding); it vs the bundle is the lowering
gap (int8 activations at accuracy level 4, and the runtime's kernels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """uint8 codes packed low-first along the last axis -> [..., count] integer codes."""
    if bits == 8:
        return packed[..., :count].astype(np.float32)
    low, high = packed & 0x0F, packed >> 4
    return np.stack([low, high], axis=-1).reshape(*packed.shape[:-1], -1)[..., :count].astype(np.float32)


def dequantize_matmul_nbits(b: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None,
                            k: int, n: int, bits: int, block_size: int) -> np.ndarray:
    """MatMulNBits' B as the fp32 [K, N] matrix a MatMul takes: (code - zero_point) * scale per block."""
    k_blocks = b.shape[1]
    codes = _unpack(b.reshape(n, k_blocks, -1), bits, block_size)  # [N, k_blocks, block]
    scales = scales.reshape(n, k_blocks, 1).astype(np.float32)
    if zero_points is None:
        zp = np.float32(2 ** (bits - 1))
    elif zero_points.dtype == np.uint8:
        zp = _unpack(zero_points.reshape(n, -1), bits, k_blocks).reshape(n, k_blocks, 1)
    else:
        zp = zero_points.reshape(n, k_blocks, 1).astype(np.float32)
    w = ((codes - zp) * scales).reshape(n, k_blocks * block_size)[:, :k]
    return np.ascontiguousarray(w.T)


def dequantize_gather_block(data: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None,
                            block_size: int) -> np.ndarray:
    """GatherBlockQuantized's table (int4 / uint4 values, one scale per block along a row) as fp32."""
    rows, cols = data.shape
    codes = data.astype(np.float32).reshape(rows, -1, block_size)
    zp = 0.0 if zero_points is None else zero_points.astype(np.float32).reshape(rows, -1, 1)
    if zero_points is None and data.dtype.name.startswith("uint"):
        zp = 8.0  # uint4 without zero points: the middle of the range
    return ((codes - zp) * scales.reshape(rows, -1, 1).astype(np.float32)).reshape(rows, cols)


def write_dequantized(src: Path, dst: Path) -> Path:
    """`src` with every quantized MatMul replaced by an fp32 MatMul, saved as `dst` plus `dst.name + '.data'`.

    Streamed: `src` is read one tensor at a time and each fp32 weight is written to the data file as soon as
    it is made, so a 1B model's 5 GB of fp32 weights are never in memory (the whole-model ModelProto would
    hold them twice, and protobuf refuses a message above 2 GB). Returns `dst`."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src), load_external_data=False)
    graph, folder = model.graph, str(Path(src).resolve().parent)
    inits = {t.name: t for t in graph.initializer}

    def array(name: str) -> np.ndarray:
        if name not in inits:
            raise ValueError(f"{src}: quantized weight {name!r} is not an initializer of the model (computed in the "
                             "graph?); the dequantizer reads weights stored as initializers only")
        return numpy_helper.to_array(inits[name], base_dir=folder)

    def optional(node, index: int) -> np.ndarray | None:
        return array(node.input[index]) if len(node.input) > index and node.input[index] else None

    producers = {o: node for node in graph.node for o in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    data = _DataFile(dst.with_name(dst.name + ".data"))
    replace, drop, new_inits = {}, set(), []
    for node in graph.node:
        if node.op_type == "GatherBlockQuantized":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if attrs.get("gather_axis", 0) != 0 or attrs.get("quantize_axis", 1) != 1:
                raise ValueError(f"{node.name}: only an embedding table quantized along its rows is supported")
            shared = _shared_output_weights(node.input[0], producers, consumers, inits)
            if shared is not None:  # a tied table: the builder gathers from the output layer's packed codes
                head = {a.name: helper.get_attribute_value(a) for a in shared.attribute}
                table = dequantize_matmul_nbits(array(shared.input[1]), array(shared.input[2]), optional(shared, 3),
                                                head["K"], head["N"], head["bits"], head["block_size"]).T
            else:
                table = dequantize_gather_block(array(node.input[0]), array(node.input[2]), optional(node, 3),
                                                attrs["block_size"])
            name = node.input[0] + "_dequantized"
            new_inits.append(data.tensor(table, name))
            replace[id(node)] = helper.make_node("Gather", [name, node.input[1]], list(node.output), name=node.name)
        if node.op_type == "MatMulNBits":
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if len(node.input) > 4 and any(node.input[4:]):
                raise ValueError(f"{node.name}: MatMulNBits with g_idx or bias is not supported")
            w = dequantize_matmul_nbits(array(node.input[1]), array(node.input[2]), optional(node, 3), attrs["K"],
                                        attrs["N"], attrs["bits"], attrs["block_size"])
            name = node.input[1] + "_dequantized"
            new_inits.append(data.tensor(w, name))
            replace[id(node)] = helper.make_node("MatMul", [node.input[0], name], list(node.output), name=node.name)
        elif node.op_type == "MatMulInteger" and node.input[1] in inits:
            # DynamicQuantizeLinear(x) -> MatMulInteger(xq, Wq, xzp, Wzp) -> Cast -> Mul(., x_scale * W_scale)
            quantize_x = producers[node.input[0]]
            cast = consumers[node.output[0]][0]
            rescale = consumers[cast.output[0]][0]
            scale_mul = producers[next(i for i in rescale.input if i != cast.output[0])]
            w_scale = next(array(i) for i in scale_mul.input if i in inits)
            w = (array(node.input[1]).astype(np.float32) - array(node.input[3]).astype(np.float32)) * w_scale
            name = node.input[1] + "_dequantized"
            new_inits.append(data.tensor(w.astype(np.float32), name))
            replace[id(rescale)] = helper.make_node("MatMul", [quantize_x.input[0], name], list(rescale.output),
                                                    name=node.name + "_dequantized")
            drop.update({id(node), id(cast)})
    nodes = [replace.get(id(n), n) for n in graph.node if id(n) not in drop]
    del graph.node[:]
    graph.node.extend(_live(nodes, {o.name for o in graph.output}))
    graph.initializer.extend(new_inits)
    _drop_unused_initializers(graph)
    for tensor in graph.initializer:  # what stays of the source's external weights moves into our data file
        if tensor.data_location == onnx.TensorProto.EXTERNAL and tensor.name not in data.written:
            data.copy(tensor, folder)
    data.close()
    onnx.save(model, str(dst))
    return dst


class _DataFile:
    """One external data file written tensor by tensor; each tensor proto made refers to its bytes there."""

    ALIGN = 4096  # page-aligned offsets, so onnxruntime can map each weight

    def __init__(self, path: Path):
        self.path, self.file, self.written = path, open(path, "wb"), set()

    def tensor(self, array: np.ndarray, name: str):
        import onnx

        t = onnx.TensorProto(name=name, data_type=onnx.helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape)
        self._refer(t, np.ascontiguousarray(array).tobytes())
        return t

    def copy(self, tensor, folder: str) -> None:
        """A source tensor's bytes as stored (int4 stays packed), moved from the source's data file to ours."""
        info = {e.key: e.value for e in tensor.external_data}
        with open(Path(folder) / info["location"], "rb") as f:
            f.seek(int(info.get("offset", 0)))
            raw = f.read(int(info["length"])) if "length" in info else f.read()
        self._refer(tensor, raw)

    def _refer(self, tensor, raw: bytes) -> None:
        import onnx

        offset = self.file.tell() + -self.file.tell() % self.ALIGN
        self.file.seek(offset)
        self.file.write(raw)
        tensor.ClearField("raw_data")
        del tensor.external_data[:]
        for key, value in (("location", self.path.name), ("offset", str(offset)), ("length", str(len(raw)))):
            tensor.external_data.add(key=key, value=value)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        self.written.add(tensor.name)

    def close(self) -> None:
        self.file.close()


def _shared_output_weights(data: str, producers: dict, consumers: dict, inits: dict):
    """The MatMulNBits whose packed weights a tied embedding's GatherBlockQuantized reads (onnxruntime-genai's
    builder reshapes the output layer's B to [vocab, hidden / 2] and gathers rows of it), or None."""
    reshape = producers.get(data)
    if reshape is None or reshape.op_type != "Reshape" or reshape.input[0] not in inits:
        return None
    return next((n for n in consumers.get(reshape.input[0], []) if n.op_type == "MatMulNBits"), None)


def _live(nodes: list, outputs: set[str]) -> list:
    """Nodes some graph output depends on, in their order (drops the now-unused quantize chains)."""
    needed, keep = set(outputs), []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    return keep[::-1]


def _drop_unused_initializers(graph) -> None:
    used = {i for node in graph.node for i in node.input} | {o.name for o in graph.output}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
