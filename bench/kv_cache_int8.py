"""ExecuTorch's int8 KV cache (`-kv8` recipes: export_llama's --quantize_kv_cache, its QuantizedKVCache and
quantized SDPA ops) against the fp32 cache, side by side in one run.

Speed and memory, on random weights of the stories110M shape (dim 768, 12 layers, 12 heads of 64: its
fp32 KV cache at 2,048 tokens is 151 MB, more than its 8da4w weights): one .pte per cache and context
(512, 1,024, 2,048), 8da4w-g32 linears in both. Each (cache, context) runs in a fresh process: load,
a prompt of `context - 64` tokens (time to first token: that prefill, in chunks of the program's
max_seq_len - 1, as the runtime's runner does), then 63 decode steps up to the full context (decode
tokens/s there), once untimed and once timed; peak RSS of the process (VmHWM) above what it held before
loading the program (VmRSS once the runtime is imported): the weights, the KV cache and the activations
ExecuTorch plans. Not ru_maxrss: Linux carries it across exec from the forked parent, the bench's own
1-2 GB exporting process. Rounds interleave the caches and
reverse the order every other round; medians over rounds, and "x fp32" is the median of the per-round ratio.

Accuracy, on the bundled model: `llamaport build` (context 256) of et-xnnpack-8da4w-g32, its -kv8 and its
-emb4g32 (the large-vocabulary default's embedding, whose cost is measured here on purpose: the bundled
model's table is below the threshold), and onnxruntime-genai's 8da4w-g32 with and without -emb4g32; each
scored by the build's own gate on the artifact against the full model (KL divergence, same top-1,
perplexity ratio, greedy match): the manifest's numbers, and each minus the recipe it changes one thing of.

    .venv/bin/python bench/kv_cache_int8.py [--contexts 512 1024 2048] [--rounds 3] [--json bench/out/kv_cache_int8.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CACHES = {"fp32": "8da4w-g32", "int8": "8da4w-g32-kv8"}
DECODE_STEPS = 63


def export_all(contexts: list[int], folder: Path) -> dict[tuple[str, int], Path]:
    from bench.decode_speed import random_checkpoint
    from llamaport.compile.exporters.executorch import export
    from llamaport.quantize import resolve_scheme

    ckpt = random_checkpoint()
    ckpt.config["max_position_embeddings"] = max(contexts)
    ptes = {}
    for context in contexts:
        for cache, scheme in CACHES.items():
            work = folder / f"{cache}-{context}"
            work.mkdir()
            ptes[cache, context] = export(ckpt, resolve_scheme(scheme), context, ("xnnpack", "portable"), work).files[0]
            print(f"exported {scheme} at context {context}", file=sys.stderr, flush=True)
    return ptes


def _status_kb(field: str) -> int:
    line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith(field + ":"))
    return int(line.split()[1])


def run_one(pte: str, context: str) -> None:
    """In a fresh process: load, prefill context - 64 tokens, decode to the full context; twice, the second timed."""
    import time

    import numpy as np

    from llamaport.runtime_tests.device.drivers.executorch_runtime import ExecuTorchModel

    before = _status_kb("VmRSS")

    model = ExecuTorchModel(Path(pte))
    n = int(context) - DECODE_STEPS - 1
    prompt = [(7 * i) % 31000 + 3 for i in range(n)]
    for _ in range(2):
        start = time.perf_counter()
        token = int(np.argmax(model.prefill(prompt)))
        ttft = time.perf_counter() - start
        start = time.perf_counter()
        for step in range(DECODE_STEPS):
            token = int(np.argmax(model.decode(token, n + step)))
        decode = DECODE_STEPS / (time.perf_counter() - start)
    peak = _status_kb("VmHWM")
    print("RESULT " + json.dumps({"ttft_s": ttft, "decode_tokens_per_s": decode, "peak_rss_mb": (peak - before) / 1024,
                                  "prompt_tokens": n}), flush=True)


def measure(pte: Path, context: int) -> dict:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(pte), str(context)],
                          capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise RuntimeError(f"{pte} at {context}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return json.loads(line[7:])


def speed(contexts: list[int], rounds: int, folder: Path) -> dict:
    ptes = export_all(contexts, folder)
    rows = {}
    for context in contexts:
        runs = {cache: [] for cache in CACHES}
        for r in range(rounds):
            for cache in (list(CACHES) if r % 2 == 0 else list(CACHES)[::-1]):
                runs[cache].append(measure(ptes[cache, context], context))
        row = {"pte_bytes": {c: ptes[c, context].stat().st_size for c in CACHES}}
        for metric in ("ttft_s", "decode_tokens_per_s", "peak_rss_mb"):
            row[metric] = {c: round(statistics.median(x[metric] for x in runs[c]), 4) for c in CACHES}
            row[metric]["int8 x fp32"] = round(statistics.median(
                i[metric] / f[metric] for i, f in zip(runs["int8"], runs["fp32"])), 3)
        rows[context] = row
        print(json.dumps({context: row}), file=sys.stderr, flush=True)
    return rows


# The accuracy rows: each recipe against the full model on its own .pte / ONNX bundle, and its difference from
# the recipe it changes one thing of (the cache, or the embedding: the large-vocabulary default's cost).
ACCURACY = {"fp32 cache": ("et-xnnpack-8da4w-g32", None),
            "int8 cache": ("et-xnnpack-8da4w-g32-kv8", "fp32 cache"),
            "4-bit embedding": ("et-xnnpack-8da4w-g32-emb4g32", "fp32 cache"),
            "onnxruntime-genai": ("ortgenai-cpu-8da4w-g32", None),
            "onnxruntime-genai 4-bit embedding": ("ortgenai-cpu-8da4w-g32-emb4g32", "onnxruntime-genai")}
METRICS = ("kld_mean", "kld_se", "same_top1_pct", "ppl_ratio", "greedy_match_pct")


def accuracy(folder: Path) -> dict:
    from llamaport.compile.pipeline import BuildRequest, run_build

    out = {}
    for name, (recipe, against) in ACCURACY.items():
        target = "linux-x86_64-ort" if recipe.startswith("ortgenai") else "linux-x86_64-xnnpack"
        build = run_build(BuildRequest(recipe=recipe, target=target, out=folder / f"bundle-{len(out)}", max_seq_len=256))
        acc = build.manifest.accuracy
        out[name] = {"recipe": recipe, "measured_by": acc.measured_by, **{k: getattr(acc.vs_full, k) for k in METRICS}}
        if against is not None:
            out[name]["minus " + against] = {k: out[name][k] - out[against][k] for k in METRICS if k != "kld_se"}
        print(json.dumps({name: out[name]}), file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contexts", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "kv_cache_int8.json")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_one(*args.child)
    with tempfile.TemporaryDirectory(prefix="lp-kv-") as tmp:
        results = {"speed_stories110m_shape": speed(args.contexts, args.rounds, Path(tmp))}
        if not args.skip_accuracy:
            results["accuracy_bundled_model"] = accuracy(Path(tmp))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
