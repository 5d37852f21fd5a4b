"""The Hugging Face ONNX layout (what optimum's ORTModelForCausalLM loads) through optimum's
exporter, then onnxruntime's quantizers by the scheme (quantize.onnx_map). The model is re-saved with
all its weights in model.onnx.data beside it, whatever the exporter or quantizer wrote."""

from __future__ import annotations

import shutil
from pathlib import Path

from llamaport.compile.checkpoint import LlamaCheckpoint
from llamaport.compile.exporters.exported import Exported, onnx_lowering
from llamaport.compile.exporters.hf_folder_out import write_hf_folder
from llamaport.quantize.onnx_map import quantize_onnx
from llamaport.quantize.schemes import QuantScheme

TASK = "text-generation-with-past"  # logits and present key/values out, past key/values in


def export(ckpt: LlamaCheckpoint, scheme: QuantScheme, context_len: int, backends: tuple[str, ...], work: Path,
           inputs=None) -> Exported:
    from optimum.exporters.onnx import main_export

    hf = write_hf_folder(ckpt, work / "hf", context_len)
    exported = work / "exported"
    main_export(str(hf), output=str(exported), task=TASK, do_validation=False, device="cpu")
    out = work / "out"
    out.mkdir()
    quantize_onnx(exported / "model.onnx", out / "model.onnx", scheme)
    for name in ("config.json", "generation_config.json"):
        shutil.copyfile(exported / name, out / name)
    files = tuple(out / n for n in ("model.onnx", "model.onnx.data", "config.json", "generation_config.json"))
    return Exported(files=files, lowering=onnx_lowering(out / "model.onnx", scheme))
