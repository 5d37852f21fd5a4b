"""The one place that maps a QuantScheme to onnxruntime's quantizers, for both ONNX layouts:

- onnxruntime-genai's model builder takes them as options (`builder_options`): it runs onnxruntime's
  MatMulNBitsQuantizer itself while it writes the graph;
- the Hugging Face ONNX layout is quantized after export (`quantize_onnx`): MatMulNBitsQuantizer for
  4w / 8da4w, `quantize_dynamic` (8-bit weights per channel, 8-bit activations per call) for 8da8w.

Scheme words map to MatMulNBits like this: `4w-gN` is 4-bit weights in blocks of N computed in fp32
(accuracy_level 1); `8da4w-gN` the same weights computed with int8 activations quantized per block at run
time (accuracy_level 4, onnxruntime's fastest CPU path). Without an algorithm in the id, weights are
rounded by onnxruntime's default quantizer (symmetric blockwise RTN in MLAS, the builder's default);
`-rtn` is its asymmetric RTN with zero points, `-hqq` its HQQ. `-emb4gN` quantizes the embedding table
the same way (GatherBlockQuantized, 4-bit, the linears' block size).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from llamaport.errors import ConfigError
from llamaport.quantize.schemes import LinearQuant, QuantScheme

ACCURACY_LEVEL = {"4w": 1, "8da4w": 4}  # MatMulNBits compute type: 1 fp32, 4 int8
OUTPUT_MATMUL = "/lm_head/MatMul"  # the output layer's node in both layouts (builder and optimum exports)


@dataclass(frozen=True)
class MatMulNBitsSetting:
    bits: int
    block_size: int
    accuracy_level: int
    symmetric: bool
    algorithm: str  # "default" | "rtn" | "hqq"

    def to_dict(self) -> dict:
        return asdict(self)


def matmul_nbits(q: LinearQuant) -> MatMulNBitsSetting | None:
    if q.kind not in ACCURACY_LEVEL:
        return None
    return MatMulNBitsSetting(bits=4, block_size=q.group_size, accuracy_level=ACCURACY_LEVEL[q.kind],
                              symmetric=q.algorithm is None, algorithm=q.algorithm or "default")


def describe(scheme: QuantScheme) -> dict:
    """What onnxruntime is asked to do, for the manifest."""
    body = scheme.linear
    if body.kind == "fp32":
        return {"quantizer": None}
    if body.kind == "8da8w":
        quantizer = {"quantizer": "onnxruntime.quantization.quantize_dynamic", "weights": "uint8 per output channel, asymmetric",
                     "activations": "uint8, dynamic"}
    else:
        quantizer = {"quantizer": "onnxruntime MatMulNBitsQuantizer", **matmul_nbits(body).to_dict()}
    quantizer["output_layer"] = "fp32" if scheme.output_quant.kind == "fp32" else "as the body"
    quantizer["embedding"] = ("fp32" if scheme.embedding.bits == 32 else
                              f"int4 in blocks of {scheme.embedding.group_size} (GatherBlockQuantized)")
    return quantizer


def _op_types(scheme: QuantScheme) -> tuple[str, ...]:
    return ("MatMul", "Gather") if scheme.embedding.bits == 4 else ("MatMul",)


def builder_options(scheme: QuantScheme) -> tuple[str, dict[str, str]]:
    """(precision, extra_options) for onnxruntime-genai's builder."""
    setting = matmul_nbits(scheme.linear)
    if setting is None:
        return "fp32", {}
    options = {"block_size": str(setting.block_size), "accuracy_level": str(setting.accuracy_level),
               "is_symmetric": "true"}
    if scheme.output_quant.kind == "fp32":
        options["nodes_to_exclude"] = OUTPUT_MATMUL
    options["op_types_to_quantize"] = "/".join(_op_types(scheme))
    return "int4", options


def check_block_counts(scheme: QuantScheme, widths: dict[str, list[int]]) -> None:
    """onnxruntime's asymmetric RTN packs the zero points of all rows into one run of nibbles, then reshapes
    them per row: a layer whose input splits into an odd number of blocks crashes it (or would get zero
    points of the wrong rows). Refuse such a layer before any work, naming a block size that fits."""
    for family, q in (("linear", scheme.linear), ("output", scheme.output_quant)):
        if q.algorithm != "rtn":
            continue
        for width in widths.get(family, []):
            if (width // q.group_size) % 2:
                fits = [g for g in (16, 32, 64, 128) if width % g == 0 and (width // g) % 2 == 0]
                raise ConfigError(
                    f"scheme {scheme.id}: {family} layers of input width {width} split into {width // q.group_size} "
                    f"blocks of {q.group_size}; onnxruntime's RTN quantizer fails on an odd number of blocks. "
                    f"Use a block size giving an even count ({', '.join(map(str, fits)) or 'none fits'}) or drop -rtn")


def _algo_config(setting: MatMulNBitsSetting, op_types: tuple[str, ...]):
    from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                  HQQWeightOnlyQuantConfig, RTNWeightOnlyQuantConfig)
    if setting.algorithm == "hqq":
        return HQQWeightOnlyQuantConfig(block_size=setting.block_size, bits=setting.bits)
    if setting.algorithm == "rtn":
        return RTNWeightOnlyQuantConfig()  # block size, symmetry and accuracy level come from the quantizer
    return DefaultWeightOnlyQuantConfig(block_size=setting.block_size, is_symmetric=setting.symmetric,
                                        accuracy_level=setting.accuracy_level, bits=setting.bits,
                                        op_types_to_quantize=op_types)


def _matmul_nbits(model, scheme: QuantScheme):
    import logging

    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    # It logs two lines per layer, and a warning each time it raises the opset or IR version for int4
    # (which it does correctly); the accuracy stage runs the result, so only its errors are shown.
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.ERROR)
    setting = matmul_nbits(scheme.linear)
    exclude = [OUTPUT_MATMUL] if scheme.output_quant.kind == "fp32" else []
    quantizer = MatMulNBitsQuantizer(model, bits=setting.bits, block_size=setting.block_size,
                                     is_symmetric=setting.symmetric, accuracy_level=setting.accuracy_level,
                                     nodes_to_exclude=exclude, algo_config=_algo_config(setting, _op_types(scheme)))
    quantizer.process()
    model = quantizer.model.model
    for node in model.graph.node:  # HQQ does not write the compute type; every path gets the same one
        if node.op_type == "MatMulNBits":
            levels = [a for a in node.attribute if a.name == "accuracy_level"]
            if levels:
                levels[0].i = setting.accuracy_level
            else:
                node.attribute.append(onnx.helper.make_attribute("accuracy_level", setting.accuracy_level))
    return model


def quantize_onnx(src: Path, dst: Path, scheme: QuantScheme) -> None:
    """Quantize the model at `src` (external data read in full) and save it self-contained at `dst`:
    its weights in `dst.name + '.data'` beside it, never pointing back at `src`'s data file."""
    import onnx

    from llamaport.quantize.onnx_files import save_self_contained

    model = onnx.load(str(src), load_external_data=True)
    if scheme.linear.kind == "8da8w":
        model = _dynamic_int8(model, scheme)
    elif matmul_nbits(scheme.linear) is not None:
        model = _matmul_nbits(model, scheme)
    save_self_contained(model, dst)


def _dynamic_int8(model, scheme: QuantScheme):
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="llamaport-int8-") as tmp:
        src, dst = Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(model, str(src), save_as_external_data=True, location="in.onnx.data")
        exclude = [OUTPUT_MATMUL] if scheme.output_quant.kind == "fp32" else []
        # uint8 weights (U8U8), not int8: MLAS's U8S8 kernel on x86 CPUs without VNNI (AVX2, plain AVX-512)
        # sums pairs of products in int16 (vpmaddubsw) and saturates; on this AVX2 host the bundled model's
        # same-top-1 fell to 78.8% with int8 weights against 98.0% with uint8 (97.3% with 7-bit reduce_range).
        # U8U8 widens to 16 bits first on x86 and is exact on ARM, so one bundle is right on every CPU;
        # optimum's AutoQuantizationConfig.avx2 makes the same choice.
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QUInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=exclude, use_external_data_format=True,
                         extra_options={"MatMulConstBOnly": True})
        return onnx.load(str(dst), load_external_data=True)
