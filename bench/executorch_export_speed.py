"""ExecuTorch side by side, in one run: ExecuTorch's own export_llama beside llamaport's .pte bundles.

The peer is export_llama run directly (`python -m executorch.examples.models.llama.export_llama`, as a
subprocess) with the settings ExecuTorch's Llama README recommends for XNNPACK, the ones of its
config/llama_xnnpack.yaml: `-kv --use_sdpa_with_kv_cache -X --xnnpack-extended-ops -d fp32 -qmode 8da4w
--group_size 128 --embedding-quantize 4,32` (8-bit dynamic activations, 4-bit weights in groups of 128 with
HQQ scales, the embedding 4-bit in groups of 32, XNNPACK with its extended ops). It reads a Meta folder
(consolidated.00.pth + params.json) of the same weights our exporter gets. Beside it llamaport's exporter for
each `--recipes` scheme (default: 8da4w-g32, llamaport's default recipe for linux-x86_64-xnnpack; the tuned
8da4w-g128-gptq-keep8x2; and 8da4w-g128, the peer's linear grouping; 8da4w-g128-emb4g32 has the peer's
embedding too).

Speed is read from random weights of the stories110M shape (dim 768, 12 layers, 12 heads, vocab 32000;
`--shape tiny` for smoke runs): the weights are random, so only speed (and bytes, export time) is read from
this part; calibrated recipes are planned on 16 windows of 64 random token ids. Per .pte: bytes, export wall
time (export_llama's includes its interpreter start and imports; the first recipe's, the export stack's imports
in this process), and in interleaved rounds (the first a warm-up, the order reversed every other round) host
decode and prefill tokens/s through ExecuTorch's Python runtime (runtime_tests.latency.measure: a 16-token
prompt, one untimed run, one timed). Medians over rounds; "x peer" is the median over rounds of the ratio
within a round, so host drift cancels out.

Accuracy (`--skip-accuracy` leaves it out) is read from the bundled model: the peer and each recipe exported
from its weights at a 256-token context (calibrated recipes planned on the model's calibration text), every
whole 256-token window of the eval text (about 3,580 positions) scored teacher-forced from position 0 through
each .pte, against the eager full model on the same windows: KL divergence mean ± SE, median, p99.9,
same-top-1 % ± SE, perplexity ratio ± SE (llama.cpp's statistics), and each recipe's KLD minus the peer's,
paired by position, with its SE.

    .venv/bin/python bench/executorch_export_speed.py [--recipes 8da4w-g32 8da4w-g128-gptq-keep8x2 8da4w-g128]
        [--repeats 7] [--tokens 64] [--context 256] [--shape stories110m|tiny] [--skip-accuracy]
        [--json bench/out/executorch_export_speed.json]
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bundled_accuracy import STATISTICS_HEADER, fmt, statistics_line  # noqa: E402
from bench.decode_speed import PROMPT_TOKENS, STORIES110M, random_windows  # noqa: E402
from llamaport.compile.checkpoint import LlamaCheckpoint, TokenizerFile, check_state_dict, llama_config  # noqa: E402
from llamaport.compile.exporters.executorch import export as export_executorch  # noqa: E402
from llamaport.compile.exporters.executorch import meta_params  # noqa: E402
from llamaport.compile.exporters.exported import ExportInputs  # noqa: E402
from llamaport.compile.pipeline import DEFAULT_MODEL  # noqa: E402
from llamaport.quantize import resolve_scheme  # noqa: E402
from llamaport.runtime_tests.device.drivers.executorch_runtime import ExecuTorchModel  # noqa: E402
from llamaport.runtime_tests.latency import LatencyProtocol, measure  # noqa: E402
from tests.source_writers import write_meta_folder  # noqa: E402

TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=1024, bos_token_id=1, eos_token_id=2)
SHAPES = {"stories110m": STORIES110M, "tiny": TINY}
RECIPES = ("8da4w-g32", "8da4w-g128-gptq-keep8x2", "8da4w-g128")
PEER = "peer: export_llama (README XNNPACK)"
BACKENDS = ("xnnpack", "portable")  # linux-x86_64-xnnpack's lowering order
# ExecuTorch's loader re-quantizes a checkpoint whose *path* contains these (model.py: "int8" in
# str(checkpoint_path) -> WeightOnlyInt8QuantHandler): no folder here may be named after a recipe.
PATH_WORDS_EXECUTORCH_ACTS_ON = ("int8", "8da4w")
# what export_llama prints that is worth keeping: warnings, what it quantizes, memory, delegation
NOTEWORTHY = re.compile(r"warn|quantiz|delegat|partitioner|required memory|error|fallback", re.IGNORECASE)
# ... less the import-time noise every torch/torchao process prints
NOISE = re.compile(r"torchao/_C|no triton|register_constant|_check_is_size|LeafSpec|^\s*warnings\.warn\(")


def peer_argv(checkpoint: Path, params: Path, out: Path, context: int, bos: int, eos: list[int]) -> list[str]:
    """export_llama's command line, the README's XNNPACK settings (config/llama_xnnpack.yaml)."""
    return [sys.executable, "-m", "executorch.examples.models.llama.export_llama",
            "--checkpoint", str(checkpoint), "--params", str(params),
            "-kv", "--use_sdpa_with_kv_cache", "-X", "--xnnpack-extended-ops", "-d", "fp32",
            "-qmode", "8da4w", "--group_size", "128", "--embedding-quantize", "4,32",
            "--max_seq_length", str(context), "--max_context_length", str(context),
            # --output-dir (with a hyphen); a --output_name ending in .pte is written as given (relative to
            # the working directory), so it is passed whole
            "--output-dir", str(out), "--output_name", str(out / "peer.pte"),
            "--metadata", json.dumps({"get_bos_id": bos, "get_eos_ids": eos})]


def random_checkpoint(shape: dict, seed: int = 0) -> LlamaCheckpoint:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = llama_config(**shape)
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    sd = check_state_dict(cfg, model.state_dict(), "random")
    # ids only; write_meta_folder copies a tokenizer beside the weights, as Meta's folders have one
    return LlamaCheckpoint(cfg, sd, TokenizerFile("hf_json", DEFAULT_MODEL / "tokenizer.json"), "random")


def work_folder(prefix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    if any(word in str(folder) for word in PATH_WORDS_EXECUTORCH_ACTS_ON):
        shutil.rmtree(folder)
        raise SystemExit(f"temporary folder {folder} contains one of {PATH_WORDS_EXECUTORCH_ACTS_ON}, which "
                         "ExecuTorch's loader acts on; set TMPDIR to another folder")
    return folder


def export_peer(ckpt: LlamaCheckpoint, folder: Path, context: int) -> tuple[Path, float, list[str]]:
    """(the peer's .pte, export_llama's wall time, the noteworthy lines it printed)."""
    meta = write_meta_folder(ckpt, folder / "meta")
    # The params.json our exporter hands ExecuTorch (hidden_dim and head_dim explicit): Meta's own
    # (write_meta_folder's) leaves hidden_dim to ModelArgs' multiple_of rounding, which only some shapes survive.
    (meta / "params.json").write_text(json.dumps(meta_params(ckpt.config)))
    out = folder / "out"
    out.mkdir()
    argv = peer_argv(meta / "consolidated.00.pth", meta / "params.json", out, context, ckpt.bos_id, ckpt.eos_ids)
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=folder)
    seconds = time.perf_counter() - start
    log = (proc.stdout + "\n" + proc.stderr).splitlines()
    (folder / "export_llama.log").write_text("\n".join(log))
    pte = out / "peer.pte"
    if proc.returncode or not pte.is_file():  # save_pte_program logs a failed write and carries on
        raise RuntimeError(f"export_llama failed (exit {proc.returncode}):\n" + "\n".join(log[-25:]))
    notes = list(dict.fromkeys(ln.strip()[:300] for ln in log if NOTEWORTHY.search(ln) and not NOISE.search(ln)))
    print(f"exported {PEER} in {seconds:.0f} s", file=sys.stderr, flush=True)
    return pte, seconds, notes


def export_ours(ckpt: LlamaCheckpoint, recipe: str, context: int, folder: Path,
                calibration: list[list[int]]) -> tuple[Path, float, float]:
    """(llamaport's .pte for `recipe`, export wall time with the plan, the plan's own time)."""
    from llamaport.compile.quant_plan import build_plan

    folder.mkdir()
    scheme = resolve_scheme(recipe)
    start = time.perf_counter()
    plan = build_plan(ckpt, scheme, calibration, "executorch") if scheme.calibrated else None
    planned = time.perf_counter() - start
    exported = export_executorch(ckpt, scheme, context, BACKENDS, folder, ExportInputs(None, None, None, plan))
    seconds = time.perf_counter() - start
    print(f"exported llamaport {recipe} in {seconds:.0f} s (plan {planned:.0f} s)", file=sys.stderr, flush=True)
    return exported.files[0], seconds, planned


def program_summary(pte: Path) -> dict:
    """What the forward method runs: delegate calls by backend and the kernels left outside them."""
    from executorch.exir._serialize._program import deserialize_pte_binary
    from executorch.exir.schema import DelegateCall, KernelCall

    program = deserialize_pte_binary(pte.read_bytes()).program
    plan = next(p for p in program.execution_plan if p.name == "forward")
    kernels, delegates = collections.Counter(), collections.Counter()
    for chain in plan.chains:
        for instruction in chain.instructions:
            call = instruction.instr_args
            if isinstance(call, KernelCall):
                op = plan.operators[call.op_index]
                kernels[f"{op.name}.{op.overload}" if op.overload else op.name] += 1
            elif isinstance(call, DelegateCall):
                delegates[plan.delegates[call.delegate_index].id] += 1
    return {"delegate_calls": dict(delegates), "kernel_calls": dict(sorted(kernels.items())),
            "methods": sorted(p.name for p in program.execution_plan)}


def host_copy_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """GB/s of a large tensor copy with the bench's two threads (bytes read plus bytes written): the memory
    roofline a decode that reads every weight once per token cannot beat."""
    src = torch.ones(megabytes * 2**20 // 4)
    dst = torch.empty_like(src)
    times = []
    for _ in range(1 + repeats):
        start = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - start)
    return 2 * src.numel() * 4 / statistics.median(times[1:]) / 1e9


def embedding_table_bytes(shape: dict, name: str) -> int:
    """The embedding table's stored bytes: decode reads one row of it per token, so the roofline leaves it out.
    The peer's is 4-bit in groups of 32 with fp16 scales (export_llama -E 4,32); ours follows the recipe id."""
    rows, dim = shape["vocab_size"], shape["hidden_size"]
    bits, group = (4, 32) if name == PEER else (resolve_scheme(name.removeprefix("llamaport ")).embedding.bits,
                                                resolve_scheme(name.removeprefix("llamaport ")).embedding.group_size)
    if bits == 32:
        return rows * dim * 4
    return rows * dim * bits // 8 + rows * (dim // group if group else 1) * 2


def time_pte(pte: Path, prompt: list[int], tokens: int) -> tuple[float, float]:
    """(decode tokens/s, prefill tokens/s): a fresh load, one untimed run, one timed. The exports leave
    this process large cyclic graphs: the garbage collector is run before and kept out of the timing (one
    of its passes inside a short timed run read as a tenfold slowdown)."""
    protocol = LatencyProtocol(decode_tokens=tokens - 1, warmup=1, repeats=1)
    gc.collect()
    gc.disable()
    try:
        latency = measure(ExecuTorchModel(pte), prompt, protocol)
    finally:
        gc.enable()
    return latency["decode_tokens_per_s"]["median"], latency["prefill_tokens_per_s"]["median"]


def speed_part(work: Path, shape: dict, recipes: list[str], context: int, repeats: int, tokens: int) -> dict:
    ckpt = random_checkpoint(shape)
    ptes, export_s, plan_s = {}, {}, {}
    ptes[PEER], export_s[PEER], notes = export_peer(ckpt, work / "peer", context)
    calibration = random_windows(shape["vocab_size"])
    for i, recipe in enumerate(recipes):
        name = f"llamaport {recipe}"
        ptes[name], export_s[name], plan_s[name] = export_ours(ckpt, recipe, context, work / f"recipe{i}", calibration)
    sizes = {k: p.stat().st_size for k, p in ptes.items()}
    programs = {k: program_summary(p) for k, p in ptes.items()}

    prompt = list(range(1, PROMPT_TOKENS + 1))
    decode, prefill = {k: [] for k in ptes}, {k: [] for k in ptes}
    for round_ in range(1 + repeats):  # interleaved rounds, the first a warm-up, so drift hits all alike;
        order = list(ptes) if round_ % 2 else list(ptes)[::-1]  # alternating order, so no one always
        for name in order:                                        # follows the same neighbour
            d, p = time_pte(ptes[name], prompt, tokens)
            decode[name].append(d)
            prefill[name].append(p)
        print(f"round {round_}{' (warm-up)' if round_ == 0 else ''} done", file=sys.stderr, flush=True)

    # the same round's measurements, divided: host drift cancels out of a ratio of neighbours
    def paired(series: dict, name: str) -> float:
        return statistics.median(a / b for a, b in zip(series[name][1:], series[PEER][1:]))

    return {"shape": shape, "context": context, "repeats": repeats, "decode_tokens": tokens - 1,
            "prompt_tokens": PROMPT_TOKENS, "peer_argv": peer_argv(Path("<meta>/consolidated.00.pth"),
                                                                   Path("<meta>/params.json"), Path("<out>"), context,
                                                                   ckpt.bos_id, ckpt.eos_ids)[1:],
            "peer_export_notes": notes, "bytes": sizes, "export_s": export_s, "plan_s": plan_s,
            "decode_tokens_per_s": decode, "prefill_tokens_per_s": prefill,
            "median_decode_tokens_per_s": {k: statistics.median(v[1:]) for k, v in decode.items()},
            "median_prefill_tokens_per_s": {k: statistics.median(v[1:]) for k, v in prefill.items()},
            "decode_x_peer": {k: paired(decode, k) for k in ptes}, "prefill_x_peer": {k: paired(prefill, k) for k in ptes},
            "bytes_x_peer": {k: sizes[k] / sizes[PEER] for k in ptes}, "programs": programs,
            # bytes a decoded token must read (all but the embedding table) times tokens/s, beside the host's copy
            # bandwidth: how close each bundle's decode is to the memory roofline
            "bytes_read_per_token": {k: sizes[k] - embedding_table_bytes(shape, k) for k in ptes},
            "host_copy_gb_per_s": host_copy_bandwidth()}


def accuracy_part(work: Path, recipes: list[str]) -> dict:
    """The peer and our recipes, built from the bundled model's weights, scored through ExecuTorch's runtime
    on every whole 256-token window of the eval text against the eager full model (bench.bundled_accuracy)."""
    from bench.bundled_accuracy import CONTEXT, eval_windows, paired_kld_difference, score

    ev = eval_windows()
    ptes, export_s = {}, {}
    ptes[PEER], export_s[PEER], notes = export_peer(ev.ckpt, work / "acc-peer", CONTEXT)
    for i, recipe in enumerate(recipes):
        name = f"llamaport {recipe}"
        ptes[name], export_s[name], _ = export_ours(ev.ckpt, recipe, CONTEXT, work / f"acc-recipe{i}", ev.calibration)
    scores, kld = {}, {}
    for name, pte in ptes.items():
        scores[name], kld[name] = score(ev, ExecuTorchModel(pte))
        scores[name].update(bytes=pte.stat().st_size, export_s=export_s[name])
        print(f"scored {name}", file=sys.stderr, flush=True)
    for name in ptes:
        diff, diff_se = paired_kld_difference(kld[name], kld[PEER])
        scores[name].update(kld_minus_peer=diff, kld_minus_peer_se=diff_se,
                            kld_le_peer=scores[name]["kld_mean"] <= scores[PEER]["kld_mean"])
    return {"model": str(DEFAULT_MODEL), "context": CONTEXT, "windows": len(ev.windows), "peer_export_notes": notes,
            "scores": scores}


def print_speed(speed: dict) -> None:
    s = speed["shape"]
    print(f"\nspeed: random weights, dim {s['hidden_size']}, {s['num_hidden_layers']} layers, vocab {s['vocab_size']}, "
          f"context {speed['context']}; {speed['prompt_tokens']}-token prompt, {speed['decode_tokens']} decoded tokens, "
          f"{speed['repeats']} rounds after a warm-up")
    print(f"{'':40} {'bytes':>12} {'export s':>9} {'decode tok/s':>13} {'spread':>15} {'prefill tok/s':>14}"
          f" {'decode x peer':>14} {'prefill x peer':>15} {'bytes x peer':>13}")
    for name, nbytes in speed["bytes"].items():
        runs = speed["decode_tokens_per_s"][name][1:]
        print(f"{name:40} {nbytes:>12,} {speed['export_s'][name]:>9.0f}"
              f" {speed['median_decode_tokens_per_s'][name]:>13.1f} {min(runs):>7.1f}-{max(runs):<7.1f}"
              f" {speed['median_prefill_tokens_per_s'][name]:>14.1f} {speed['decode_x_peer'][name]:>14.2f}"
              f" {speed['prefill_x_peer'][name]:>15.2f} {speed['bytes_x_peer'][name]:>13.3f}")
    print(f"memory roofline: host copy bandwidth {speed['host_copy_gb_per_s']:.1f} GB/s (2 threads, read + write); "
          "weights read per decoded token x median decode tokens/s:")
    for name, per_token in speed["bytes_read_per_token"].items():
        print(f"  {name:38} {per_token / 1e6:7.1f} MB/token -> "
              f"{per_token * speed['median_decode_tokens_per_s'][name] / 1e9:5.1f} GB/s")
    plans = ", ".join(f"{k.removeprefix('llamaport ')} {v:.0f} s" for k, v in speed["plan_s"].items() if v > 0.5)
    print("x peer: decode and prefill, median over rounds of the ratio within a round; export s: the peer's "
          "includes its interpreter start" + (f", a calibrated recipe's its plan ({plans})" if plans else ""))
    for name, program in speed["programs"].items():
        outside = sum(program["kernel_calls"].values())
        print(f"{name}: delegate calls {program['delegate_calls']}, {outside} kernel calls outside them: "
              + ", ".join(f"{k.split('::')[-1]} x{n}" for k, n in program["kernel_calls"].items()))


def print_accuracy(accuracy: dict) -> None:
    scores = accuracy["scores"]
    print(f"\naccuracy on the bundled model, {next(iter(scores.values()))['positions']} positions "
          f"({accuracy['windows']} windows of {accuracy['context']}), vs the eager full model")
    print(f"{'':40} {'bytes':>10} {STATISTICS_HEADER} {'KLD - peer (paired)':>22} {'KLD <= peer':>11}")
    for name, m in scores.items():
        vs_peer = "" if name == PEER else ("yes" if m["kld_le_peer"] else "no")
        diff = "" if name == PEER else f"{m['kld_minus_peer']:>+10.2e} ± {fmt(m['kld_minus_peer_se'], '<8.1e')}"
        print(f"{name:40} {m['bytes']:>10,} {statistics_line(m)} {diff:>22} {vs_peer:>11}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), help="llamaport scheme ids built beside the peer")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="stories110m")
    parser.add_argument("--json", type=Path, default=Path("bench/out/executorch_export_speed.json"))
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    for recipe in args.recipes:
        resolve_scheme(recipe)  # an unknown id fails here, before any export
    torch.set_num_threads(2)

    work = work_folder("llamaport-et-bench-")
    try:
        speed = speed_part(work, SHAPES[args.shape], args.recipes, args.context, args.repeats, args.tokens)
        accuracy = {} if args.skip_accuracy else accuracy_part(work, args.recipes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_speed(speed)
    if accuracy:
        print_accuracy(accuracy)
    if speed["peer_export_notes"]:
        print("\nexport_llama said (warnings, quantization, delegation):")
        for line in speed["peer_export_notes"]:
            print(f"  {line}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"speed": speed, "accuracy_on_bundled_model": accuracy}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
