"""Build cost at real sizes, side by side in one run: llamaport's whole build of a random-weight model of a
real shape beside the peer's own export of the same weights, each as its own process tree, with wall time
and peak RSS of the whole tree (every child included: the ONNX builder, the tokenizer probe) per stage.

The model: random weights (normal, std 0.02) of the Llama-3.2-1B shape (dim 2048, 16 layers, 32 heads,
8 KV heads, 128,256 x 2048 tied embedding, llama3 rope scaling) or the stories110M shape, in bf16
safetensors as Hugging Face ships them, with the bundled 512-token tokenizer (ids only; the weights are
random, so only time, memory and bytes are read here). The same weights as a Meta folder
(consolidated.00.pth in bf16, params.json) for ExecuTorch's export_llama.

Peers, run directly: for .pte, export_llama (`-kv --use_sdpa_with_kv_cache -X --xnnpack-extended-ops -d
fp32 -qmode 8da4w --group_size 32`, plus `-E 4,32` where our build quantizes the embedding, so both
quantize the same tables); for onnxruntime-genai, its model builder (`-p int4 -e cpu`, block 32) on the
same Hugging Face folder. Ours: `llamaport build` (default recipe of the target: linux-x86_64-xnnpack,
linux-x86_64-ort) at the same context, every stage included (the full and quantized references, the
accuracy gate's measurement on this host's runtime, the manifest; the gate itself is off, as random
weights would miss it). Peak RSS is sampled every 0.1 s over the tree.

    .venv/bin/python bench/build_memory.py [--shape llama32-1b stories110m] [--runtimes executorch onnxruntime]
        [--context 1024] [--json bench/out/build_memory.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {
    "llama32-1b": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                       num_attention_heads=32, num_key_value_heads=8, head_dim=64, rope_theta=500000.0,
                       rms_norm_eps=1e-5, max_position_embeddings=131072, tie_word_embeddings=True,
                       rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    "stories110m": dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                        num_attention_heads=12, num_key_value_heads=12, head_dim=64, rope_theta=10000.0,
                        rms_norm_eps=1e-5, max_position_embeddings=1024, tie_word_embeddings=False),
    "tiny": dict(vocab_size=512, hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, rope_theta=10000.0, rms_norm_eps=1e-5,
                 max_position_embeddings=1024, tie_word_embeddings=False),  # a smoke run of the bench itself
}
TARGETS = {"executorch": "linux-x86_64-xnnpack", "onnxruntime": "linux-x86_64-ort"}
BOS, EOS = 1, 2  # the bundled tokenizer's


class TreeSampler:
    """Peak RSS of a process and all its descendants, sampled every `period` s, per named phase."""

    def __init__(self, pid: int, period: float = 0.1):
        self.proc, self.period = psutil.Process(pid), period
        self.phase, self.peaks, self._stop = "start", {}, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def enter(self, phase: str) -> None:
        """A new phase, sampled at once (a stage shorter than the period still gets its reading)."""
        self.phase = phase
        self.peaks[phase] = max(self.peaks.get(phase, 0), self._rss())

    def _rss(self) -> int:
        total = 0
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def _run(self):
        while not self._stop.is_set():
            rss = self._rss()
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)
            time.sleep(self.period)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self.thread.join()
        return self.peaks


def run_tree(argv: list[str], log: Path, stage_lines: bool = False) -> dict:
    """Run argv; wall time, peak tree RSS overall and per stage (from our child's `STAGE name start|done s` lines)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    sampler = TreeSampler(proc.pid)
    stages, lines = {}, []
    for line in proc.stdout:
        lines.append(line)
        if stage_lines and line.startswith("STAGE "):
            _, name, event, seconds = line.split()
            if event == "start":
                sampler.enter(name)
            else:
                stages[name] = {"wall_s": float(seconds)}
    proc.wait()
    wall = time.perf_counter() - start
    peaks = sampler.stop()
    log.write_text("".join(lines))
    if proc.returncode:
        raise RuntimeError(f"{argv[:4]} failed (exit {proc.returncode}):\n{''.join(lines[-20:])}")
    for name, record in stages.items():
        record["peak_rss_gb"] = round(peaks.get(name, 0) / 1e9, 2)
    return {"wall_s": round(wall, 1), "peak_rss_gb": round(max(peaks.values()) / 1e9, 2), "stages": stages}


def random_folders(shape: dict, root: Path) -> tuple[Path, Path]:
    """(Hugging Face folder, Meta folder) of the same random bf16 weights, made one tensor at a time."""
    import torch

    from llamaport.compile.checkpoint import expected_shapes, llama_config
    from llamaport.compile.exporters.executorch import meta_params
    from llamaport.compile.exporters.hf_folder_out import write_shards
    from llamaport.compile.layout import hf_to_meta
    from llamaport.compile.pipeline import DEFAULT_MODEL

    cfg = llama_config(**shape, bos_token_id=BOS, eos_token_id=EOS)
    gen = torch.Generator().manual_seed(0)
    weights = {}
    for name, dims in expected_shapes(cfg).items():
        weights[name] = (torch.ones(dims) if len(dims) == 1 else torch.randn(dims, generator=gen) * 0.02).to(torch.bfloat16)
    hf = root / "hf"
    hf.mkdir(parents=True)
    write_shards(weights, {n: n for n in weights}, hf)
    (hf / "config.json").write_text(json.dumps({**shape, "architectures": ["LlamaForCausalLM"], "model_type": "llama",
                                                "bos_token_id": BOS, "eos_token_id": EOS, "torch_dtype": "bfloat16",
                                                "hidden_act": "silu"}, indent=2))
    shutil.copyfile(DEFAULT_MODEL / "tokenizer.json", hf / "tokenizer.json")
    meta = root / "meta"
    meta.mkdir()
    torch.save(hf_to_meta(weights, cfg), meta / "consolidated.00.pth")
    (meta / "params.json").write_text(json.dumps(meta_params(cfg)))
    shutil.copyfile(DEFAULT_MODEL / "tokenizer.json", meta / "tokenizer.json")
    return hf, meta


def export_llama_argv(meta: Path, out: Path, context: int, embedding: str | None) -> list[str]:
    argv = [sys.executable, "-m", "executorch.examples.models.llama.export_llama",
            "--checkpoint", str(meta / "consolidated.00.pth"), "--params", str(meta / "params.json"),
            "-kv", "--use_sdpa_with_kv_cache", "-X", "--xnnpack-extended-ops", "-d", "fp32",
            "-qmode", "8da4w", "--group_size", "32", "--max_seq_length", str(context),
            "--max_context_length", str(context), "--output-dir", str(out), "--output_name", str(out / "peer.pte"),
            "--metadata", json.dumps({"get_bos_id": BOS, "get_eos_ids": [EOS]})]
    return argv + (["-E", embedding] if embedding else [])


def builder_argv(hf: Path, out: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(out), "-p", "int4",
            "-e", "cpu", "-c", str(cache), "--extra_options", "hf_token=false", "int4_block_size=32"]


def ours_argv(model: Path, out: Path, target: str, context: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", str(model), str(out), target, str(context)]


def child(model: str, out: str, target: str, context: str) -> None:
    """Our build in this process, its stage boundaries printed for the sampler."""
    import dataclasses

    from llamaport.compile.pipeline import BuildRequest, run_build
    from llamaport.targets import profiles

    # Random weights: the target's accuracy floor would judge noise, so it is off (every stage still runs,
    # the gate's own measurement included); nothing else of the target changes.
    profiles.BUILTIN_TARGETS[target] = dataclasses.replace(profiles.BUILTIN_TARGETS[target], gates=())

    def progress(stage: str, event: str, seconds: float) -> None:
        print(f"STAGE {stage} {event} {seconds:.3f}", flush=True)

    build = run_build(BuildRequest(model=Path(model), target=target, out=Path(out), max_seq_len=int(context)),
                      progress=progress)
    m = build.manifest
    print("RESULT " + json.dumps({"recipe": m.recipe.id, "chosen_by": m.recipe.chosen_by,
                                  "artifact_bytes": m.artifact_bytes(), "vs_full": vars(m.accuracy.vs_full)}), flush=True)


def result_line(log: Path) -> dict:
    for line in log.read_text().splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {}


def folder_bytes(folder: Path, suffixes: tuple[str, ...]) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name.endswith(suffixes))


def measure(shape_name: str, runtimes: list[str], context: int, root: Path) -> dict:
    hf, meta = random_folders(SHAPES[shape_name], root / "src")
    rows = {}
    for runtime in runtimes:
        try:
            rows[runtime] = measure_runtime(runtime, hf, meta, context, root)
        except RuntimeError as e:  # one runtime's failure is a result too; the others still run
            rows[runtime] = {"error": str(e)[-2000:]}
        print(json.dumps({shape_name: {runtime: rows[runtime]}}, indent=1), flush=True)
    return rows


def measure_runtime(runtime: str, hf: Path, meta: Path, context: int, root: Path) -> dict:
    out = root / f"ours-{runtime}"
    ours = run_tree(ours_argv(hf, out, TARGETS[runtime], context), root / f"ours-{runtime}.log", stage_lines=True)
    ours.update(result_line(root / f"ours-{runtime}.log"))
    if runtime == "executorch":
        embedding = "4,32" if "emb4g32" in ours.get("recipe", "") else None
        peer_out = root / "peer-et"
        peer_out.mkdir()
        peer = run_tree(export_llama_argv(meta, peer_out, context, embedding), root / "peer-et.log")
        peer.update(name=f"export_llama 8da4w g32{' -E 4,32' if embedding else ''}",
                    artifact_bytes=folder_bytes(peer_out, (".pte",)))
    else:
        peer_out = root / "peer-genai"
        peer = run_tree(builder_argv(hf, peer_out, root / "cache"), root / "peer-genai.log")
        peer.update(name="onnxruntime-genai builder int4 block 32",
                    artifact_bytes=folder_bytes(peer_out, (".onnx", ".onnx.data")))
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(peer_out, ignore_errors=True)
    return {"ours": ours, "peer": peer, "peak_rss_ratio": round(ours["peak_rss_gb"] / peer["peak_rss_gb"], 2),
            "wall_ratio": round(ours["wall_s"] / peer["wall_s"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", nargs="+", default=["llama32-1b", "stories110m"], choices=sorted(SHAPES))
    parser.add_argument("--runtimes", nargs="+", default=["executorch", "onnxruntime"], choices=sorted(TARGETS))
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "out" / "build_memory.json")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    results = {"context": args.context, "cpus": psutil.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 1e9, 1)}
    for shape in args.shape:
        root = Path(tempfile.mkdtemp(prefix=f"lp-bench-{shape}-"))
        try:
            results[shape] = measure(shape, args.runtimes, args.context, root)
        finally:  # the logs stay beside the JSON (what each tool printed, for a failure or a warning)
            logs = args.json.parent / f"{args.json.stem}-logs" / shape
            logs.mkdir(parents=True, exist_ok=True)
            for log in root.glob("*.log"):
                shutil.copyfile(log, logs / log.name)
            shutil.rmtree(root, ignore_errors=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
