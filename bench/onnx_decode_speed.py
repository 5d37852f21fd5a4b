"""ONNX side by side, in one run, on a random-weight stories110M-shaped Llama: bytes and host decode
tokens/s for eager fp32 transformers, our fp32 ONNX bundle, our int8 (dynamic, Hugging Face layout) and
int4 (onnxruntime-genai, 8da4w-g32 and -g128) bundles, and the peer: onnxruntime-genai's own model builder
run directly on the same model, with its defaults (`-p int4 -e cpu`: blocks of 32, int8 compute) and with
`block_size=128`; beside them llamaport's tuned int4 bundle (`--tuned`, default 8da4w-g128-gptq-keep8x2: GPTQ
in blocks of 128, the two units most sensitive on calibration text kept at 8 bits). Medians of interleaved
repeats; ratios against eager and against the peer built with the same block size, and the tuned bundle
against the builder's default.

Speed is read from random weights; accuracy from the bundled model (`--skip-accuracy` leaves it out): the
builder's default int4 and each llamaport int4 recipe built from its weights, every 256-token window of
the eval text (about 3,580 positions) scored through onnxruntime against the eager full model: KL divergence,
same-top-1 and perplexity ratio with their standard errors. The GPTQ plan of the random-weight model is
calibrated on random token windows (its speed does not depend on them).

The genai-layout models are timed through onnxruntime-genai's generation loop (append the prompt, then
generate_next_token), as an app runs them; the Hugging Face layout through plain onnxruntime. Every
measurement runs in a fresh process (load, one untimed generation, the median of three timed), so one
runtime's idle spinning threads never slow another's.

    .venv/bin/python bench/onnx_decode_speed.py [--repeats 11] [--tokens 64] [--tuned 8da4w-g128-gptq-keep8x2]
        [--skip-accuracy] [--json bench/out/onnx_decode_speed.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
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
from bench.decode_speed import PROMPT_TOKENS, STORIES110M, random_checkpoint, random_windows, time_eager  # noqa: E402
from llamaport.compile.checkpoint import TokenizerFile  # noqa: E402
from llamaport.compile.exporters.hf_folder_out import write_hf_folder  # noqa: E402
from llamaport.compile.exporters.onnx_genai import export as export_ort_genai  # noqa: E402
from llamaport.compile.exporters.onnx_genai import run_builder  # noqa: E402
from llamaport.compile.exporters.onnx_optimum import export as export_optimum_onnx  # noqa: E402
from llamaport.compile.pipeline import DEFAULT_MODEL  # noqa: E402
from llamaport.quantize import resolve_scheme  # noqa: E402
from llamaport.runtime_tests.latency import LatencyProtocol, measure  # noqa: E402
from llamaport.runtime_tests.device.drivers.onnxruntime_session import OrtModel  # noqa: E402

EAGER = "eager fp32 (transformers)"
TUNED = "llamaport tuned (genai)"
PEER_DEFAULT = "peer: genai builder -p int4 (g32)"
PEERS = {PEER_DEFAULT: {}, "peer: genai builder block_size=128": {"block_size": "128"}}
# our int4 bundle -> the peer built with the same block size
SAME_BLOCKS = {"llamaport int4 8da4w-g32 (genai)": "peer: genai builder -p int4 (g32)",
               "llamaport int4 8da4w-g128 (genai)": "peer: genai builder block_size=128"}


def genai_timer(folder: Path, prompt: list[int], tokens: int):
    import onnxruntime_genai as og

    model = og.Model(str(folder))

    def run() -> float:
        params = og.GeneratorParams(model)
        total = len(prompt) + tokens
        params.set_search_options(max_length=total, min_length=total, do_sample=False)  # random weights: no early EOS
        generator = og.Generator(model, params)
        generator.append_tokens(prompt)
        generator.generate_next_token()  # the first token ends the prefill; decode is the rest
        start = time.perf_counter()
        for _ in range(tokens - 1):
            generator.generate_next_token()
        return (tokens - 1) / (time.perf_counter() - start)
    return run


def session_timer(model_path: Path, prompt: list[int], tokens: int, context: int):
    cfg = STORIES110M
    model = OrtModel(model_path, cfg["num_key_value_heads"], cfg["hidden_size"] // cfg["num_attention_heads"], context)
    protocol = LatencyProtocol(decode_tokens=tokens - 1, warmup=0, repeats=1)
    return lambda: measure(model, prompt, protocol)["decode_tokens_per_s"]["median"]


def eager_timer(hf_folder: Path, prompt: list[int], tokens: int):
    from llamaport.compile.sources import load_checkpoint

    ckpt = load_checkpoint(hf_folder)
    return lambda: time_eager(ckpt, prompt, tokens)


def measure_once(how: str, path: Path, tokens: int, context: int) -> float:
    """One candidate in this process: load, one untimed generation, then the median of three timed ones
    (single generations of 64 tokens on this 2-core host swing by a third)."""
    torch.set_num_threads(2)
    prompt = list(range(1, PROMPT_TOKENS + 1))
    run = {"eager": lambda: eager_timer(path, prompt, tokens), "genai": lambda: genai_timer(path, prompt, tokens),
           "session": lambda: session_timer(path, prompt, tokens, context)}[how]()
    run()
    return statistics.median(run() for _ in range(3))


def measure_in_subprocess(how: str, path: Path, tokens: int, context: int) -> float:
    """Each measurement in a fresh process, so no runtime's idle thread pool or caches touch another's."""
    argv = [sys.executable, __file__, "--one", how, str(path), "--tokens", str(tokens), "--context", str(context)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("TOKENS_PER_S ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{how} {path}: {proc.stderr.strip().splitlines()[-1:]}")
    return float(lines[-1].split()[1])


def same_bytes(a: Path, b: Path) -> bool:
    """Two genai folders with the same model.onnx and model.onnx.data, byte for byte."""
    digest = lambda f: hashlib.sha256(f.read_bytes()).hexdigest()  # noqa: E731
    return all(digest(a / n) == digest(b / n) for n in ("model.onnx", "model.onnx.data"))


def export_genai(ckpt, scheme_id: str, context: int, folder: Path, calibration: list[list[int]]):
    """llamaport's onnxruntime-genai export, with the layer plan of a calibrated recipe (GPTQ, 8-bit units)."""
    from llamaport.compile.exporters.exported import ExportInputs
    from llamaport.compile.quant_plan import build_plan

    scheme = resolve_scheme(scheme_id)
    plan = build_plan(ckpt, scheme, calibration, "onnxruntime") if scheme.calibrated else None
    return export_ort_genai(ckpt, scheme, context, ("cpu",), folder, ExportInputs(None, None, None, plan))


def build_candidates(work: Path, context: int, tuned: str) -> dict[str, tuple[str, Path, int]]:
    """name -> (how to time it, model path or folder, bytes)"""
    ckpt = random_checkpoint()
    ckpt.tokenizer = TokenizerFile("hf_json", DEFAULT_MODEL / "tokenizer.json")  # ids only; the builder wants one
    hf = write_hf_folder(ckpt, work / "hf", context)  # what the eager model and the peer load
    candidates = {EAGER: ("eager", hf, sum(t.numel() * t.element_size() for t in ckpt.state_dict.values()))}
    size = lambda files: sum(f.stat().st_size for f in files if f.name.startswith("model.onnx"))  # noqa: E731
    for name, exporter, scheme, how in (("llamaport fp32 (genai layout)", export_ort_genai, "fp32", "genai"),
                                        ("llamaport int8 8da8w (HF layout)", export_optimum_onnx, "8da8w", "session"),
                                        ("llamaport int4 8da4w-g32 (genai)", export_ort_genai, "8da4w-g32", "genai"),
                                        ("llamaport int4 8da4w-g128 (genai)", export_ort_genai, "8da4w-g128", "genai")):
        folder = work / scheme
        folder.mkdir()
        start = time.perf_counter()
        files = exporter(ckpt, resolve_scheme(scheme), context, ("cpu",), folder).files
        print(f"exported {name} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        model = next(f for f in files if f.name == "model.onnx")
        candidates[name] = (how, model.parent if how == "genai" else model, size(files))
    folder = work / "tuned"
    folder.mkdir()
    start = time.perf_counter()
    files = export_genai(ckpt, tuned, context, folder, random_windows(STORIES110M["vocab_size"])).files
    print(f"exported tuned {tuned} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    candidates[TUNED] = ("genai", next(f for f in files if f.name == "model.onnx").parent, size(files))
    for i, (name, options) in enumerate(PEERS.items()):
        run_builder(hf, work / f"peer{i}", work / "peer-cache", "int4", options)
        candidates[name] = ("genai", work / f"peer{i}", size((work / f"peer{i}").iterdir()))
    # each of our int4 bundles next to its peer, so a round times the two back to back
    order = [EAGER, *(n for n in candidates if n not in SAME_BLOCKS and n not in PEERS and n != TUNED), TUNED,
             *(n for pair in SAME_BLOCKS.items() for n in pair)]
    return {n: candidates[n] for n in order}


def accuracy_on_bundled_model(work: Path, recipes: list[str]) -> dict[str, dict]:
    """The builder's default int4 and our recipes, built from the bundled model's weights, scored through
    onnxruntime on every 256-token window of the eval text against the eager full model (bench.bundled_accuracy)."""
    from bench.bundled_accuracy import CONTEXT, eval_windows, paired_kld_difference, score

    ev = eval_windows()
    cfg = ev.ckpt.config
    hf = write_hf_folder(ev.ckpt, work / "acc-hf", CONTEXT)
    models = {PEER_DEFAULT: work / "acc-peer" / "model.onnx"}
    run_builder(hf, work / "acc-peer", work / "acc-cache", "int4", {})
    for recipe in recipes:
        folder = work / f"acc-{recipe}"
        folder.mkdir()
        models[f"llamaport {recipe}"] = export_genai(ev.ckpt, recipe, CONTEXT, folder, ev.calibration).files[0]
    out, kld = {}, {}
    for name, path in models.items():
        out[name], kld[name] = score(ev, OrtModel(path, cfg["num_key_value_heads"], cfg["head_dim"], CONTEXT))
    for name in models:
        diff, diff_se = paired_kld_difference(kld[name], kld[PEER_DEFAULT])
        out[name].update(kld_minus_peer=diff, kld_minus_peer_se=diff_se)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--json", type=Path, default=Path("bench/out/onnx_decode_speed.json"))
    parser.add_argument("--tuned", default="8da4w-g128-gptq-keep8x2", help="llamaport scheme of the tuned bundle")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--one", nargs=2, metavar=("HOW", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(f"TOKENS_PER_S {measure_once(args.one[0], Path(args.one[1]), args.tokens, args.context)}")
        return

    work = Path(tempfile.mkdtemp(prefix="llamaport-onnx-bench-"))
    try:
        candidates = build_candidates(work, args.context, args.tuned)
        accuracy = {} if args.skip_accuracy else accuracy_on_bundled_model(work, ["8da4w-g32", "8da4w-g128", args.tuned])
        identical = {ours: same_bytes(candidates[ours][1], candidates[peer][1]) for ours, peer in SAME_BLOCKS.items()}
        speeds = {k: [] for k in candidates}
        for round_ in range(1 + args.repeats):  # interleaved rounds, the first a warm-up, so drift hits all alike;
            order = list(candidates) if round_ % 2 else list(candidates)[::-1]  # alternating order, so no one
            for name in order:                                                  # always follows the same neighbour
                how, path, _ = candidates[name]
                speeds[name].append(measure_in_subprocess(how, path, args.tokens, args.context))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {k: statistics.median(v[1:]) for k, v in speeds.items()}
    # the same round's measurements, divided: host drift cancels out of a ratio of neighbours
    def paired(name: str, other: str) -> float:
        return statistics.median(a / b for a, b in zip(speeds[name][1:], speeds[other][1:]))
    x_eager = {name: paired(name, EAGER) for name in candidates}
    peer_ratio = {ours: paired(ours, peer) for ours, peer in SAME_BLOCKS.items()}
    peer_ratio[TUNED] = paired(TUNED, PEER_DEFAULT)  # against the builder's default

    print(f"{'':36} {'bytes':>12} {'decode tok/s':>13} {'spread':>15} {'x eager':>8} {'x peer':>7}")
    for name, (_, _, nbytes) in candidates.items():
        runs = speeds[name][1:]
        peer = f"{peer_ratio[name]:>7.2f}" if name in peer_ratio else f"{'':>7}"
        print(f"{name:36} {nbytes:>12,} {medians[name]:>13.1f} {min(runs):>7.1f}-{max(runs):<7.1f}"
              f" {x_eager[name]:>8.2f} {peer}")
    print("x eager, x peer: median over rounds of the ratio within a round (tuned: x the builder's default g32)")
    print(f"tuned = llamaport {args.tuned}")
    if accuracy:
        print(f"\naccuracy on the bundled model, {next(iter(accuracy.values()))['positions']} positions, vs the eager full model")
        print(f"{'':44} {STATISTICS_HEADER} {'KLD - peer (paired)':>22}")
        for name, m in accuracy.items():
            diff = "" if name == PEER_DEFAULT else f"{m['kld_minus_peer']:>+10.2e} ± {fmt(m['kld_minus_peer_se'], '<8.1e')}"
            print(f"{name:44} {statistics_line(m)} {diff:>22}")
    for ours, peer in SAME_BLOCKS.items():
        print(f"{ours} is byte-identical to '{peer}': {identical[ours]}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"shape": STORIES110M, "repeats": args.repeats, "decode_tokens": args.tokens,
                                     "prompt_tokens": PROMPT_TOKENS, "bytes": {k: v[2] for k, v in candidates.items()},
                                     "decode_tokens_per_s": speeds, "median_decode_tokens_per_s": medians,
                                     "x_eager": x_eager, "x_peer": peer_ratio,
                                     "byte_identical_to_peer": identical, "tuned": args.tuned,
                                     "accuracy_on_bundled_model": accuracy}, indent=2))


if __name__ == "__main__":
    main()
