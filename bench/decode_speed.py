"""Side by side, in one run: bytes and host decode tokens/s of a random-weight stories110M-shaped Llama
(dim 768, 12 layers, 12 heads, vocab 32000) as eager fp32 transformers, our fp32 .pte and our
8da4w-g32 .pte, with the embedding fp32 and 4-bit (ExecuTorch's own stories110M setup). Medians of
repeats; ratios against eager and against the fp32 .pte. At this shape the fp32 embedding alone is
18% of the fp32 file, so only the -emb4g32 bundle can get under a quarter of its bytes.

    .venv/bin/python bench/decode_speed.py [--repeats 7] [--tokens 64] [--json bench/out/decode_speed.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from llamaport.compile.checkpoint import LlamaCheckpoint, TokenizerFile, check_state_dict, llama_config  # noqa: E402
from llamaport.compile.exporters.executorch import export as export_executorch  # noqa: E402
from llamaport.compile.reference import full_model  # noqa: E402
from llamaport.quantize import resolve_scheme  # noqa: E402
from llamaport.runtime_tests.latency import LatencyProtocol, measure  # noqa: E402
from llamaport.runtime_tests.device.drivers.executorch_runtime import ExecuTorchModel  # noqa: E402

STORIES110M = dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                   num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=1024,
                   bos_token_id=1, eos_token_id=2)
PROMPT_TOKENS = 16
SCHEMES = ("fp32", "8da4w-g32", "8da4w-g32-emb4g32")


def random_checkpoint(seed: int = 0) -> LlamaCheckpoint:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = llama_config(**STORIES110M)
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    sd = check_state_dict(cfg, model.state_dict(), "random stories110M")
    return LlamaCheckpoint(cfg, sd, TokenizerFile("none", Path("-")), "random")


def random_windows(vocab: int, count: int = 16, length: int = 64) -> list[list[int]]:
    """Calibration windows for random weights, which have no text of their own: a calibrated recipe's plan
    still runs (its speed does not depend on what it was calibrated on)."""
    generator = torch.Generator().manual_seed(0)
    return torch.randint(3, vocab, (count, length), generator=generator).tolist()


def time_eager(ckpt: LlamaCheckpoint, prompt: list[int], tokens: int) -> float:
    model = full_model(ckpt)
    with torch.inference_mode():
        out = model(torch.tensor([prompt]), use_cache=True)
        past, nxt = out.past_key_values, int(out.logits[0, -1].argmax())
        start = time.perf_counter()
        for _ in range(tokens - 1):
            out = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, int(out.logits[0, -1].argmax())
    return (tokens - 1) / (time.perf_counter() - start)


def time_pte(pte: Path, prompt: list[int], tokens: int) -> float:
    protocol = LatencyProtocol(decode_tokens=tokens - 1, warmup=0, repeats=1)
    return measure(ExecuTorchModel(pte), prompt, protocol)["decode_tokens_per_s"]["median"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--json", type=Path, default=Path("bench/out/decode_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)

    ckpt = random_checkpoint()
    prompt = list(range(1, PROMPT_TOKENS + 1))
    work = Path(tempfile.mkdtemp(prefix="llamaport-bench-"))
    candidates = {"eager fp32 (transformers)": None}
    for scheme in SCHEMES:
        folder = work / scheme
        folder.mkdir()
        start = time.perf_counter()
        exported = export_executorch(ckpt, resolve_scheme(scheme), args.context, ("xnnpack", "portable"), folder)
        candidates[f"llamaport {scheme} .pte"] = exported.files[0]
        print(f"exported {scheme} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    sizes = {"eager fp32 (transformers)": sum(t.numel() * t.element_size() for t in ckpt.state_dict.values())}
    sizes.update({k: p.stat().st_size for k, p in candidates.items() if p is not None})

    speeds = {k: [] for k in candidates}
    for _ in range(1 + args.repeats):  # interleaved rounds, the first a warm-up, so drift hits all alike
        for name, pte in candidates.items():
            speeds[name].append(time_eager(ckpt, prompt, args.tokens) if pte is None else time_pte(pte, prompt, args.tokens))
    medians = {k: statistics.median(v[1:]) for k, v in speeds.items()}
    eager, fp32_pte = medians["eager fp32 (transformers)"], medians["llamaport fp32 .pte"]

    print(f"{'':36} {'bytes':>12} {'decode tok/s':>13} {'spread':>15} {'x eager':>8} {'x fp32 .pte':>11}")
    for name in candidates:
        runs = speeds[name][1:]
        print(f"{name:36} {sizes[name]:>12,} {medians[name]:>13.1f} {min(runs):>7.1f}-{max(runs):<7.1f}"
              f" {medians[name] / eager:>8.2f} {medians[name] / fp32_pte:>11.2f}")
    for scheme in SCHEMES[1:]:
        ratio = sizes[f"llamaport {scheme} .pte"] / sizes["llamaport fp32 .pte"]
        print(f"{scheme} .pte bytes / fp32 .pte bytes = {ratio:.3f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"shape": STORIES110M, "repeats": args.repeats, "decode_tokens": args.tokens,
                                     "prompt_tokens": PROMPT_TOKENS, "bytes": sizes, "decode_tokens_per_s": speeds,
                                     "median_decode_tokens_per_s": medians}, indent=2))


if __name__ == "__main__":
    main()
