"""onnxruntime-genai bundles through its own model builder (GroupQueryAttention, MatMulNBits, fused
norms and RoPE: the graph onnxruntime-genai runs fastest), fed our normalized checkpoint. The builder
quantizes while it writes, with the options quantize.onnx_map derives from the scheme. Its tokenizer
output is not kept: the bundle carries the source's own tokenizer, the one the golden ids came from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from llamaport.compile.checkpoint import LlamaCheckpoint
from llamaport.compile.exporters.exported import Exported, onnx_lowering
from llamaport.compile.exporters.hf_folder_out import write_hf_folder
from llamaport.quantize.onnx_files import external_data_files
from llamaport.quantize.onnx_map import builder_options
from llamaport.quantize.schemes import QuantScheme

BUILDER = "onnxruntime_genai.models.builder"


def run_builder(hf_folder: Path, out: Path, cache: Path, precision: str, options: dict[str, str]) -> None:
    """The builder as its own command line, so its console output and memory stay out of ours."""
    argv = [sys.executable, "-m", BUILDER, "-i", str(hf_folder), "-o", str(out), "-p", precision, "-e", "cpu",
            "-c", str(cache), "--extra_options", "hf_token=false", *(f"{k}={v}" for k, v in options.items())]
    proc = subprocess.run(argv, capture_output=True, text=True, errors="replace")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise RuntimeError(f"onnxruntime-genai's builder failed ({' '.join(argv[3:])}):\n{tail}")


def export(ckpt: LlamaCheckpoint, scheme: QuantScheme, context_len: int, backends: tuple[str, ...], work: Path,
           inputs=None) -> Exported:
    # A tied model's int4 output layer would be shared with the embedding by the builder (GatherBlockQuantized
    # over the output layer's codes): the embedding would no longer be the fp32 table the recipe id says,
    # and onnxruntime-genai 0.15's reshape of that table breaks when a block does not divide the hidden
    # size (SmolLM-135M's 576 at block 128: "Input shape {V,5,64}, requested shape {V,288}"). Untied, the
    # bundle does what the id says. A 4-bit embedding (-emb4) keeps the builder's sharing.
    untie = scheme.embedding.bits == 32 and scheme.output_quant.kind != "fp32"
    hf = write_hf_folder(ckpt, work / "hf", context_len, untie=untie)
    out = work / "genai"
    precision, options = builder_options(scheme)
    run_builder(hf, out, work / "cache", precision, options)
    config_path = out / "genai_config.json"
    config = json.loads(config_path.read_text())
    config["search"]["max_length"] = context_len  # the bundle's context, as for ExecuTorch bundles
    config_path.write_text(json.dumps(config, indent=4) + "\n")
    model = out / "model.onnx"
    plan = inputs.plan if inputs is not None else None
    if plan is not None and plan.grids:  # GPTQ's codes and the 8-bit units, over the builder's rounding
        from llamaport.quantize.onnx_grid import rewrite_model

        rewrite_model(model, plan.grids)
    files = (model, *(out / name for name in sorted(external_data_files(model))), config_path)
    return Exported(files=files, lowering=onnx_lowering(model, scheme))
