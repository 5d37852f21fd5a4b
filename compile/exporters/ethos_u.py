"""Arm Ethos-U through ExecuTorch's Arm backend: a fixed-length forward (no KV cache, every position's
logits) quantized to static int8 (or 16-bit activations on the U85) by the Arm quantizer, calibrated on
real text, lowered to TOSA and compiled by Vela.

This process exports the fp32 program (torch.export) and hands it over; the Arm steps (quantizer,
calibration, lowering, Vela, the quantized reference) run in a child process with the Arm toolchain on its
path (llamaport.targets.toolchains: tosa-tools cannot live in the main environment), in
llamaport.compile.ethos_u_worker. The bundle gets model.pte for the board and, in check/, the lowered edge
program and the TOSA program of each delegate: what the check's reference-model runner executes.

RoPE: Hugging Face's rotate-half layout when the model's RoPE has no scaling (ExecuTorch's use_hf_rope):
with Meta's interleaved pairs the lowering requantizes around 512 slice/concat ops, which cost ~37% of
U85 cycles and a few output LSBs (shared/notes/npu.md). ExecuTorch's HF-RoPE path ignores Llama 3.1's
rope_scaling, so scaled models keep Meta's layout, which implements it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from llamaport.compile.checkpoint import LlamaCheckpoint
from llamaport.compile.exporters.exported import Exported
from llamaport.errors import StageError
from llamaport.quantize.schemes import QuantScheme

WORKER = "llamaport.compile.ethos_u_worker"
EDGE_PROGRAM, DELEGATES = "ethos_u_edge.pt2", "ethos_u_delegates.json"


def rope_layout(cfg: dict) -> str:
    """hf-rotate-half where ExecuTorch's HF RoPE computes the model's RoPE exactly, else meta-interleaved."""
    return "meta-interleaved" if cfg.get("rope_scaling") else "hf-rotate-half"


def fixed_length_model(ckpt: LlamaCheckpoint, window: int, layout: str) -> torch.nn.Module:
    """ExecuTorch's Llama without KV cache returning every position's logits, fp32, in `layout`."""
    from executorch.examples.models.llama.llama_transformer import construct_transformer
    from executorch.examples.models.llama.model_args import ModelArgs

    from llamaport.compile.exporters.executorch import meta_params
    from llamaport.compile.layout import hf_to_meta

    hf_rope = layout == "hf-rotate-half"
    args = ModelArgs(**meta_params(ckpt.config), max_seq_len=window, max_context_len=window,
                     generate_full_logits=True, use_hf_rope=hf_rope)
    with torch.device("meta"):
        module = construct_transformer(args)
    module.load_state_dict(hf_to_meta(ckpt.state_dict, ckpt.config, permute_rope=not hf_rope), strict=False, assign=True)
    module.rope = type(module.rope)(args)  # its tables were built on the meta device
    return module.eval()


def export(ckpt: LlamaCheckpoint, scheme: QuantScheme, context_len: int, backends: tuple[str, ...], work: Path,
           inputs=None) -> Exported:
    from llamaport.targets.toolchains import ensure_toolchain, toolchain_env
    from llamaport.targets.backends import BACKENDS

    layout = rope_layout(ckpt.config)
    model = fixed_length_model(ckpt, context_len, layout)
    example = (torch.zeros(1, context_len, dtype=torch.int32),)  # the Arm backend's token dtype
    with torch.no_grad():
        torch.export.save(torch.export.export(model, example), str(work / "fp32.pt2"))
    del model
    eval_set, calibration, npu = inputs.eval_set, inputs.calibration, inputs.target.npu
    job = {"window": context_len, "scheme": scheme.linear.kind, "npu": vars(npu).copy(),
           "calibration": calibration.windows, "eval_windows": eval_set.windows(), "prompts": eval_set.prompts,
           "greedy_tokens": eval_set.greedy_tokens, "work": str(work)}
    (work / "job.json").write_text(json.dumps(job))
    toolchain = ensure_toolchain(BACKENDS[backends[0]].toolchain)
    _run_worker(work, toolchain_env(toolchain))
    result = json.loads((work / "result.json").read_text())
    return _exported(work, result, calibration.info, layout, scheme)


def _run_worker(work: Path, env: dict) -> None:
    """The Arm steps in their own process (the toolchain on its path); its log goes to a file, and the
    last line of an error is what the user sees."""
    log = work / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.run([sys.executable, "-m", WORKER, str(work / "job.json")], stdout=out,
                              stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        tail = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln), lines[-1] if lines else "")
        raise StageError("artifact", f"the Arm lowering failed (exit {proc.returncode}): {tail.strip()[:300]}")


def _exported(work: Path, result: dict, calibration, layout: str, scheme: QuantScheme) -> Exported:
    from llamaport.typed import from_dict
    from llamaport.runtime_tests.manifest import Delegation, Lowering, NpuEstimate

    npz = torch.load(work / "quantized_outputs.pt", weights_only=True)
    lowering = Lowering(
        quantization=result["quantization"], delegation=from_dict(Delegation, result["delegation"], "delegation"),
        calibration=calibration, npu_estimate=from_dict(NpuEstimate, result["npu_estimate"], "npu_estimate"),
        notes=(f"RoPE in {layout} layout" + (" (ExecuTorch's use_hf_rope: no slice/concat pairs on the NPU)"
                                               if layout == "hf-rotate-half" else
                                               " (the model's rope_scaling is implemented only there)"),))
    check = (work / EDGE_PROGRAM, work / DELEGATES, *[work / name for name in result["tosa_files"]])
    return Exported(files=(work / "model.pte",), lowering=lowering, check_files=check,
                    quantized_outputs=(npz["logits"].float(), npz["greedy"].tolist()), rope_layout=layout)


def quantized_outputs(ckpt, scheme, eval_set, context_len, artifact):
    """Never called: the worker computes the calibrated graph's outputs during the export (Exported.quantized_outputs)."""
    raise StageError("quantized_reference", "the Ethos-U export did not hand back its quantized reference")


