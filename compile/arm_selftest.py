"""First-use self-test of the arm-ethos-u toolchain (targets/toolchains.py). The toolchain's packages run outside
their declared pins (tosa-tools wants numpy<2.2 and ml_dtypes==0.5.1; the main venv has newer), so before it is
trusted it must build one real model end to end: quantize a tiny SwiGLU MLP with the Arm quantizer, lower it
through TOSA and Vela for Ethos-U85, run the intermediate TOSA on the TOSA reference model and require the same
int8 output bits as the fake-quantized torch graph. A numpy/ml_dtypes mismatch in the serializer or the reference
model would show up here as an import error, a crash or wrong bits.

Runs in a child process that has the toolchain appended to sys.path (toolchains.activate_toolchain)."""

from __future__ import annotations

import tempfile
import time
from importlib.metadata import version
from pathlib import Path

TARGET = "ethos-u85-256"
DIM, HIDDEN, TOKENS, CALIBRATION_INPUTS = 64, 192, 8, 8


def _swiglu_mlp():
    import torch

    class SwiGLU(torch.nn.Module):  # the Llama feed-forward block, the layer an NPU build is mostly made of
        def __init__(self):
            super().__init__()
            self.gate = torch.nn.Linear(DIM, HIDDEN, bias=False)
            self.up = torch.nn.Linear(DIM, HIDDEN, bias=False)
            self.down = torch.nn.Linear(HIDDEN, DIM, bias=False)

        def forward(self, x):
            return self.down(torch.nn.functional.silu(self.gate(x)) * self.up(x))

    return SwiGLU().eval()


def run() -> dict:
    import torch
    import tosa_reference_model
    from executorch.backends.arm.ethosu import EthosUCompileSpec, EthosUPartitioner
    from executorch.backends.arm.quantizer import EthosUQuantizer, get_symmetric_quantization_config
    from executorch.exir import to_edge_transform_and_lower
    from executorch.exir.passes.quantize_io_pass import extract_io_quant_params
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    torch.manual_seed(0)
    model = _swiglu_mlp()
    example = (torch.randn(1, TOKENS, DIM),)
    calibration = [torch.randn(1, TOKENS, DIM) for _ in range(CALIBRATION_INPUTS)]

    with tempfile.TemporaryDirectory(prefix="arm-selftest-") as dump:
        start = time.perf_counter()
        compile_spec = EthosUCompileSpec(TARGET).dump_intermediate_artifacts_to(dump)
        quantizer = EthosUQuantizer(compile_spec)
        quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True))
        exported = torch.export.export(model, example, strict=True)
        # torch 2.13 with executorch 1.5.1: prepare_pt2e needs the module without its guards (can go with the
        # same change as in llamaport.compile.ethos_u_worker).
        prepared = prepare_pt2e(exported.module(check_guards=False), quantizer)
        for sample in calibration:
            prepared(*sample)
        fake_quantized = convert_pt2e(prepared)
        edge = to_edge_transform_and_lower(torch.export.export(fake_quantized, example, strict=True),
                                           partitioner=[EthosUPartitioner(compile_spec)])
        lower_s = time.perf_counter() - start
        # The TOSA backend dumps its graph as output_<tag>_<spec>.tosa; Vela's input is saved as out.tosa.
        # They must be the same bytes, so the graph checked below is the one Vela compiled.
        tosa_dumps = sorted(Path(dump).glob("output*.tosa"))
        if len(tosa_dumps) != 1:
            found = sorted(p.name for p in Path(dump).iterdir())
            raise RuntimeError(f"expected one partition's TOSA dump, found {found}")
        tosa_flatbuffer = tosa_dumps[0].read_bytes()
        vela_input = Path(dump) / "out.tosa"
        if vela_input.exists() and vela_input.read_bytes() != tosa_flatbuffer:
            raise RuntimeError("Vela was given a different TOSA graph than the TOSA backend dumped")
        io = extract_io_quant_params(edge, input_idxs=(0,), output_idxs=(0,))

    # The delegate takes and returns int8: quantize the input with the graph's own input parameters, run the
    # TOSA graph, and compare its int8 output with the torch graph's output re-quantized with the output
    # parameters (the torch output is dequantize(int8), so re-quantizing recovers those ints exactly).
    (in_params,), (out_params,) = io["inputs"].values(), io["outputs"].values()
    x = torch.randn(1, TOKENS, DIM)
    x_int8 = torch.ops.quantized_decomposed.quantize_per_tensor(
        x, in_params["scale"], in_params["zero_point"], -128, 127, torch.int8)
    outputs, status = tosa_reference_model.run(tosa_flatbuffer, [x_int8.numpy()], verbosity="NONE")
    if status != tosa_reference_model.GraphStatus.TOSA_VALID:
        raise RuntimeError(f"the TOSA reference model rejected the lowered graph: {status}")
    tosa_int8 = torch.from_numpy(outputs[0].copy()).reshape(1, TOKENS, DIM).to(torch.int32)
    torch_int8 = torch.ops.quantized_decomposed.quantize_per_tensor(
        fake_quantized(x), out_params["scale"], out_params["zero_point"], -128, 127, torch.int8).to(torch.int32)
    diff = (tosa_int8 - torch_int8).abs()  # in int8 steps: 0 everywhere means the same bits
    result = {"vela": version("ethos-u-vela"), "tosa_tools": version("tosa-tools"),
              "max_abs_diff": int(diff.max()), "exact_pct": round(100.0 * float((diff == 0).float().mean()), 2),
              "lower_s": round(lower_s, 2)}
    if result["max_abs_diff"] != 0:
        raise RuntimeError(f"TOSA reference model output differs from the fake-quantized torch graph "
                           f"(max {result['max_abs_diff']} int8 steps, {result['exact_pct']}% exact): {result}")
    return result
