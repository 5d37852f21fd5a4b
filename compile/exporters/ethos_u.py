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
EDGE_PROGRAM, DECODE_EDGE_PROGRAM, DELEGATES = "ethos_u_edge.pt2", "ethos_u_decode_edge.pt2", "ethos_u_delegates.json"


def rope_layout(cfg: dict) -> str:
    """hf-rotate-half where ExecuTorch's HF RoPE computes the model's RoPE exactly, else meta-interleaved."""
    return "meta-interleaved" if cfg.get("rope_scaling") else "hf-rotate-half"


def fixed_length_model(ckpt: LlamaCheckpoint, window: int, layout: str) -> torch.nn.Module:
    """ExecuTorch's Llama without KV cache returning every position's logits, fp32, in `layout`."""
    from llamaport.compile.exporters.executorch import eager_llama

    return eager_llama(ckpt, window, full_logits=True, hf_rope=layout == "hf-rotate-half")


class DecodeStep(torch.nn.Module):
    """One token in, its logits out, the KV cache as the module's (mutable) state: the decode program."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
        out = self.model(tokens, {"input_pos": input_pos})
        return out[0] if isinstance(out, tuple) else out


def decode_step_inputs(token: int, pos: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([[token]], dtype=torch.int32), torch.tensor([pos], dtype=torch.int32)


def reset_kv_cache(module: torch.nn.Module) -> None:
    for name, buffer in module.named_buffers():
        if name.endswith(("k_cache", "v_cache")):
            buffer.zero_()


def decode_model(ckpt: LlamaCheckpoint, context: int, layout: str, calibration: list[list[int]]) -> torch.nn.Module:
    """ExecuTorch's Llama with a KV cache of `context` positions, stored int8 with per-head-dim scales
    calibrated on the calibration windows (ExecuTorch's StaticQuantizedKVCache): the only cache its Arm
    backend lowers in 1.5.1 (an fp32 cache's index_put makes a partition with dependency cycles, xfail
    upstream as MLETORCH-1971)."""
    from executorch.examples.models.llama.llama_transformer import construct_transformer
    from executorch.examples.models.llama.model_args import ModelArgs
    from executorch.examples.models.llama.source_transformation.custom_kv_cache import (
        enable_static_kv_cache_calibration, finalize_static_kv_cache_calibration,
        replace_kv_cache_with_static_quantized_kv_cache)

    from llamaport.compile.exporters.executorch import meta_params
    from llamaport.compile.layout import hf_to_meta

    hf_rope = layout == "hf-rotate-half"
    args = ModelArgs(**meta_params(ckpt.config), max_seq_len=context, max_context_len=context, use_kv_cache=True,
                     enable_dynamic_shape=False, generate_full_logits=False, use_hf_rope=hf_rope)
    model = construct_transformer(args)  # on the CPU: the cache and mask buffers are real
    model.load_state_dict(hf_to_meta(ckpt.state_dict, ckpt.config, permute_rope=not hf_rope), strict=False)
    replace_kv_cache_with_static_quantized_kv_cache(model, use_custom_update_cache_op=False)
    step = DecodeStep(model.eval()).eval()
    enable_static_kv_cache_calibration(model)
    with torch.no_grad():
        for window in calibration:
            reset_kv_cache(step)
            for pos, token in enumerate(window):
                step(*decode_step_inputs(token, pos))
    finalize_static_kv_cache_calibration(model)
    reset_kv_cache(step)
    return step


def export(ckpt: LlamaCheckpoint, scheme: QuantScheme, context_len: int, backends: tuple[str, ...], work: Path,
           inputs=None) -> Exported:
    from llamaport.targets.toolchains import announce, ensure_toolchain, toolchain_env
    from llamaport.targets.backends import BACKENDS

    layout = rope_layout(ckpt.config)
    model = fixed_length_model(ckpt, context_len, layout)
    example = (torch.zeros(1, context_len, dtype=torch.int32),)  # the Arm backend's token dtype
    with torch.no_grad():
        torch.export.save(torch.export.export(model, example), str(work / "fp32.pt2"))
    del model
    eval_set, calibration, npu = inputs.eval_set, inputs.calibration, inputs.target.npu
    step = decode_model(ckpt, context_len, layout, calibration.windows)
    with torch.no_grad():
        torch.export.save(torch.export.export(step, decode_step_inputs(0, 0)), str(work / "decode_fp32.pt2"))
    del step
    job = {"window": context_len, "scheme": scheme.linear.kind, "npu": vars(npu).copy(),
           "calibration": calibration.windows, "eval_windows": eval_set.windows(), "prompts": eval_set.prompts,
           "greedy_tokens": eval_set.greedy_tokens, "work": str(work)}
    (work / "job.json").write_text(json.dumps(job))
    toolchain = ensure_toolchain(BACKENDS[backends[0]].toolchain, progress=announce)
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
        npu_decode_estimate=from_dict(NpuEstimate, result["npu_decode_estimate"], "npu_decode_estimate"),
        notes=(f"RoPE in {layout} layout" + (" (ExecuTorch's use_hf_rope: no slice/concat pairs on the NPU)"
                                               if layout == "hf-rotate-half" else
                                               " (the model's rope_scaling is implemented only there)"),
               "decode.pte: one token with an int8 KV cache (per-head-dim scales calibrated on the calibration "
               "windows); greedy runs of the quantized reference and of the check use it"))
    check = (work / EDGE_PROGRAM, work / DECODE_EDGE_PROGRAM, work / DELEGATES,
             *[work / name for name in result["tosa_files"]])
    return Exported(files=(work / "model.pte", work / "decode.pte"), lowering=lowering, check_files=check,
                    quantized_outputs=(npz["logits"].float(), npz["greedy"].tolist()), rope_layout=layout)


def quantized_outputs(ckpt, scheme, eval_set, context_len, artifact):
    """Never called: the worker computes the calibrated graph's outputs during the export (Exported.quantized_outputs)."""
    raise StageError("quantized_reference", "the Ethos-U export did not hand back its quantized reference")


