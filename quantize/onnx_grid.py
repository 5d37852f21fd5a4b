"""Write a plan's grids (quantize.gptq.Grid: GPTQ's 4-bit codes, a mixed-precision unit's 8-bit codes) into
the MatMulNBits nodes onnxruntime-genai's builder wrote, in MatMulNBits' own layout: B is uint8
[N, k_blocks, block_size * bits / 8] (4-bit codes two per byte, low nibble first), scales [N, k_blocks], and
without a zero-point input the zero point is 2^(bits-1), so a signed code c is stored as c + 2^(bits-1).
The node's `bits` attribute follows the grid. This is what the builder's own mixed-precision pass writes,
for the units our plan chose rather than its fixed llama.cpp pattern."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _packed(codes: np.ndarray, bits: int, block: int) -> np.ndarray:
    n, k = codes.shape
    stored = (codes.astype(np.int16) + 2 ** (bits - 1)).astype(np.uint8).reshape(n, k // block, block)
    if bits == 8:
        return stored
    return (stored[..., 0::2] | (stored[..., 1::2] << 4)).astype(np.uint8)


def write_grids(model, grids: dict) -> list[str]:
    """`grids`: builder node name (quantize.plan.genai_node) -> Grid. Returns the nodes written; a grid
    with no node of that name, or of another shape, is an error (a plan must never be dropped silently)."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    written = []
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        key = node.name.rsplit("_Q", 1)[0]
        if key not in grids:
            continue
        grid = grids[key]
        attrs = {a.name: a for a in node.attribute}
        n, k, block = attrs["N"].i, attrs["K"].i, attrs["block_size"].i
        codes, scales = grid.codes.numpy(), grid.scales.numpy().astype(np.float32)
        if grid.group != block or codes.shape[0] != n or codes.shape[1] != -(-k // block) * block:
            raise ValueError(f"{node.name}: grid {codes.shape} in groups of {grid.group} does not fit N={n} K={k} "
                             f"block {block}")
        bits = grid.bits
        if len(node.input) > 3 and node.input[3]:
            raise ValueError(f"{node.name}: has zero points; grids are symmetric")
        b_name, s_name = node.input[1], node.input[2]
        inits[b_name].CopyFrom(numpy_helper.from_array(_packed(codes, bits, block), b_name))
        old_scale_dtype = numpy_helper.to_array(inits[s_name]).dtype
        inits[s_name].CopyFrom(numpy_helper.from_array(scales.reshape(n, -1).astype(old_scale_dtype), s_name))
        attrs["bits"].CopyFrom(helper.make_attribute("bits", bits))
        written.append(key)
    missing = set(grids) - set(written)
    if missing:
        raise ValueError(f"no MatMulNBits node for planned units {sorted(missing)}")
    return written


def rewrite_model(path: Path, grids: dict) -> list[str]:
    """Load the model at `path` with its external data, write the grids, save it back self-contained."""
    import onnx

    from llamaport.quantize.onnx_files import save_self_contained

    from llamaport.quantize.onnx_files import external_data_files

    model = onnx.load(str(path), load_external_data=True)
    written = write_grids(model, grids)
    staging = path.parent / ".grids"
    staging.mkdir()
    data = save_self_contained(model, staging / path.name)
    for old in external_data_files(path):
        (path.parent / old).unlink()
    data.rename(path.parent / data.name)
    (staging / path.name).rename(path)
    staging.rmdir()
    return written
