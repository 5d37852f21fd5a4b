"""The Arm steps of an Ethos-U build, run in a child process with the Arm toolchain (tosa-tools, Vela) on its
path, for two programs: the fixed-length forward (model.pte; teacher-forced logits) and the decode step with
an int8 KV cache (decode.pte; greedy runs). For each: the Arm quantizer (PT2E), calibration on the job's
windows, the quantized reference (the converted, fake-quantized graph), lowering to TOSA and Vela with each
delegate's TOSA program and Vela report kept, the .pte, and the lowered edge program for the check.

    python -m llamaport.compile.ethos_u_worker WORK/job.json

Writes into WORK: model.pte, decode.pte, ethos_u_edge.pt2, ethos_u_decode_edge.pt2, [decode-]delegate-<n>.tosa,
ethos_u_delegates.json, quantized_outputs.pt, result.json."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import sys
import time
from pathlib import Path


def _quantizer(spec, kind: str):
    """As export_llama's get_ethosu_quantizer: symmetric per-channel int8 weights, int8 or int16 activations."""
    from executorch.backends.arm.quantizer import (EthosUQuantizer, get_symmetric_a16w8_quantization_config,
                                                   get_symmetric_quantization_config)

    config = get_symmetric_a16w8_quantization_config() if kind == "16a8w" else get_symmetric_quantization_config()
    return EthosUQuantizer(spec).set_global(config), config


def _padded(window: list[int], length: int):
    """A window as the fixed-length program takes it: right-padded (the causal mask keeps padding out of
    every real position's logits)."""
    import torch

    return torch.tensor([window + [0] * (length - len(window))], dtype=torch.int32)


def quantized_outputs(model, eval_windows, prompts, greedy_tokens: int, length: int):
    """Teacher-forced logits over the eval windows, and greedy runs re-reading the window each step."""
    import torch

    logits = torch.cat([model(_padded(w, length))[0, : len(w)].float() for w in eval_windows])
    runs = []
    for prompt in prompts:
        seq = list(prompt)
        for _ in range(greedy_tokens):
            seq.append(int(model(_padded(seq, length))[0, len(seq) - 1].argmax()))
        runs.append(seq[len(prompt):])
    return logits, torch.tensor(runs, dtype=torch.long)


class VelaCapture:
    """Wraps the Ethos-U backend's Vela call so that each delegate's TOSA program, Vela summary and console
    output are kept (ExecuTorch's own intermediate dump overwrites the summary per delegate)."""

    def __init__(self, root: Path):
        self.root, self.calls = root, []

    def __enter__(self):
        import executorch.backends.arm.ethosu.backend as ethosu_backend

        self.module, self.original = ethosu_backend, ethosu_backend.vela_compile

        def compile_and_keep(tosa_flatbuffer, args, verbose=False, intermediate_path=None, block_placements=None):
            folder = self.root / f"delegate-{len(self.calls)}"
            folder.mkdir(parents=True)
            console = io.StringIO()
            with contextlib.redirect_stdout(console):
                result = self.original(tosa_flatbuffer, list(args), verbose=False, intermediate_path=str(folder),
                                       block_placements=block_placements)
            self.calls.append({"folder": folder, "tosa": bytes(tosa_flatbuffer), "console": console.getvalue(),
                               "processed_sha256": hashlib.sha256(result.processed_bytes).hexdigest()})
            return result

        ethosu_backend.vela_compile = compile_and_keep
        return self

    def __exit__(self, *exc):
        self.module.vela_compile = self.original


def _summary_row(folder: Path) -> dict:
    summary = next((folder / "output").glob("*_summary_*.csv"))
    with open(summary, newline="") as f:
        return next(csv.DictReader(f))


def _ops(console: str, kind: str) -> int:
    for line in console.splitlines():
        if line.strip().startswith(f"{kind} operators"):
            return int(line.split("=")[1].split()[0])
    return 0


def npu_estimate(calls: list[dict], npu: dict, window: int, cpu_ops: dict, vela_version: str) -> dict:
    delegates = []
    clock = None
    for call in calls:
        row = _summary_row(call["folder"])
        clock = float(row["core_clock"])
        kib = lambda key: int(round(float(row.get(key) or 0) * 1024))  # noqa: E731  (Vela reports KiB)
        delegates.append({
            "npu_cycles": int(float(row["cycles_npu"])), "total_cycles": int(float(row["cycles_total"])),
            "estimated_ms": float(row["inference_time"]) * 1e3, "sram_bytes": kib("sram_memory_used"),
            "flash_bytes": kib("on_chip_flash_memory_used") + kib("off_chip_flash_memory_used"),
            "npu_ops": _ops(call["console"], "NPU"), "cpu_ops": _ops(call["console"], "CPU")})
    return {"compiler": f"ethos-u-vela {vela_version}", "accelerator": npu["accelerator"],
            "system_config": npu["system_config"], "memory_mode": npu["memory_mode"],
            "clock_mhz": (clock or 0) / 1e6, "forward_tokens": window,
            "estimated_ms": sum(d["estimated_ms"] for d in delegates),
            "npu_cycles": sum(d["npu_cycles"] for d in delegates), "total_cycles": sum(d["total_cycles"] for d in delegates),
            "sram_bytes": max((d["sram_bytes"] for d in delegates), default=0),
            "flash_bytes": sum(d["flash_bytes"] for d in delegates), "delegates": delegates, "cpu_ops": cpu_ops}


def _decode(module, tokens: list[int]):
    """Logits of each token read one at a time through the decode program, from an empty cache."""
    import torch

    from llamaport.compile.exporters.ethos_u import decode_step_inputs, reset_kv_cache

    reset_kv_cache(module)
    return torch.stack([module(*decode_step_inputs(t, pos)).reshape(-1).float() for pos, t in enumerate(tokens)])


def decode_greedy(module, prompts, greedy_tokens: int):
    """Greedy runs through the decode program: the prompt token by token, then one token a step."""
    import torch

    from llamaport.compile.exporters.ethos_u import decode_step_inputs, reset_kv_cache

    runs = []
    for prompt in prompts:
        reset_kv_cache(module)
        for pos, token in enumerate(prompt):
            logits = module(*decode_step_inputs(token, pos))
        seq = []
        for i in range(greedy_tokens):
            seq.append(int(logits.reshape(-1).argmax()))
            logits = module(*decode_step_inputs(seq[-1], len(prompt) + i))
        runs.append(seq)
    return torch.tensor(runs, dtype=torch.long)


def _lower(converted, example, spec, vela_root: Path):
    """The converted graph lowered for the NPU, with each delegate's TOSA and Vela report captured."""
    import torch
    from executorch.backends.arm.ethosu import EthosUPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    with torch.no_grad():
        program = torch.export.export(converted, example)
    with VelaCapture(vela_root) as vela:
        edge = to_edge_transform_and_lower(program, partitioner=[EthosUPartitioner(spec)],
                                           compile_config=EdgeCompileConfig(_check_ir_validity=False))
    return edge, vela.calls


def _save_program(edge, calls, work: Path, prefix: str, pte: str, edge_file: str, delegates: dict, tosa_files: list):
    from executorch.exir.serde.serialize import save as save_edge

    save_edge(edge.exported_program(), str(work / edge_file))  # before to_executorch, which rewrites it in place
    for i, call in enumerate(calls):
        name = f"{prefix}delegate-{i}.tosa"
        (work / name).write_bytes(call["tosa"])
        tosa_files.append(name)
        delegates[call["processed_sha256"]] = name
    (work / pte).write_bytes(edge.to_executorch().buffer)


def main(job_path: str) -> None:
    from llamaport.targets.toolchains import activate_toolchain

    activate_toolchain()
    import torch
    from executorch.backends.arm.ethosu import EthosUCompileSpec
    from importlib.metadata import version
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from llamaport.compile.exporters.ethos_u import decode_step_inputs
    from llamaport.compile.exporters.executorch import delegation_summary

    job = json.loads(Path(job_path).read_text())
    work, window, npu = Path(job["work"]), job["window"], job["npu"]
    timings, delegates, tosa_files = {}, {}, []
    start = time.perf_counter()
    spec = EthosUCompileSpec(npu["accelerator"], system_config=npu["system_config"], memory_mode=npu["memory_mode"],
                             extra_flags=["--verbose-performance"])
    quantizer, config = _quantizer(spec, job["scheme"])
    # torch 2.13 + torchao 0.18: prepare_pt2e fails on an exported module that keeps its input guards, so the
    # modules are taken without them. Can go when prepare_pt2e accepts .module() as it is (a test build passes).
    # The fixed-length forward (model.pte): teacher-forced logits come from it.
    module = torch.export.load(str(work / "fp32.pt2")).module(check_guards=False)  # see below
    prepared = prepare_pt2e(module, quantizer)
    with torch.no_grad():
        for w in job["calibration"]:
            prepared(_padded(w, window))
        converted = convert_pt2e(prepared)
        logits, _ = quantized_outputs(converted, job["eval_windows"], [], 0, window)
    timings["forward_quantize"] = time.perf_counter() - start
    start = time.perf_counter()
    forward, forward_calls = _lower(converted, (_padded([0], window),), spec, work / "vela")
    delegation = delegation_summary(forward.exported_program().graph_module, ("ethos-u", "portable"))
    _save_program(forward, forward_calls, work, "", "model.pte", "ethos_u_edge.pt2", delegates, tosa_files)
    timings["forward_lower"] = time.perf_counter() - start

    # The decode program (decode.pte): one token, int8 KV cache; greedy runs come from it.
    start = time.perf_counter()
    quantizer, _ = _quantizer(spec, job["scheme"])
    step = torch.export.load(str(work / "decode_fp32.pt2")).module(check_guards=False)
    prepared = prepare_pt2e(step, quantizer)
    with torch.no_grad():
        for w in job["calibration"]:
            _decode(prepared, w)
        converted = convert_pt2e(prepared)
        greedy = decode_greedy(converted, job["prompts"], job["greedy_tokens"])
    timings["decode_quantize"] = time.perf_counter() - start
    start = time.perf_counter()
    decode, decode_calls = _lower(converted, decode_step_inputs(0, 0), spec, work / "vela-decode")
    decode_delegation = delegation_summary(decode.exported_program().graph_module, ("ethos-u", "portable"))
    _save_program(decode, decode_calls, work, "decode-", "decode.pte", "ethos_u_decode_edge.pt2", delegates, tosa_files)
    timings["decode_lower"] = time.perf_counter() - start

    torch.save({"logits": logits, "greedy": greedy}, work / "quantized_outputs.pt")
    (work / "ethos_u_delegates.json").write_text(json.dumps({"tosa_by_processed_sha256": delegates,
                                                             "tosa_spec": str(spec.tosa_spec)}))
    vela_version = version("ethos-u-vela")
    result = {"quantization": {"linear": {"quantizer": "EthosUQuantizer", "config": type(config).__name__,
                                          "activation": repr(config.get_input_act_qspec()),
                                          "weight": repr(config.get_weight_qspec())},
                               "kv_cache": "int8, per-head-dim scales (ExecuTorch StaticQuantizedKVCache), decode.pte"},
              "delegation": vars(delegation) | {"backends": list(delegation.backends)},
              "npu_estimate": npu_estimate(forward_calls, npu, window, dict(delegation.non_delegated_ops), vela_version),
              "npu_decode_estimate": npu_estimate(decode_calls, npu, 1, dict(decode_delegation.non_delegated_ops),
                                                  vela_version),
              "tosa_files": tosa_files, "timings_s": timings}
    (work / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
