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
    hf = write_hf_folder(ckpt, work / "hf", context_len)
    out = work / "genai"
    precision, options = builder_options(scheme)
    run_builder(hf, out, work / "cache", precision, options)
    config_path = out / "genai_config.json"
    config = json.loads(config_path.read_text())
    config["search"]["max_length"] = context_len  # the bundle's context, as for ExecuTorch bundles
    config_path.write_text(json.dumps(config, indent=4) + "\n")
    model = out / "model.onnx"
    files = (model, *(out / name for name in sorted(external_data_files(model))), config_path)
    return Exported(files=files, lowering=onnx_lowering(model, scheme))
