"""Train llamaport's bundled default model: a ~1M-parameter Llama on generated stories.

Deterministic (fixed seeds, fixed thread count, deterministic algorithms) and a few minutes on two
CPU cores. Writes a Hugging Face folder (config.json, model.safetensors, tokenizer.json,
tokenizer_config.json, generation_config.json) plus eval.txt, text held apart from training
(a different generator seed, so no eval story is a training story).

    python scripts/train_default_model.py --out compile/default_model
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

sys.path.insert(0, str(Path(__file__).parent))
from storygen import generate_stories  # noqa: E402

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]  # Llama 2 convention: unk 0, bos 1, eos 2
TRAIN_SEED, EVAL_SEED = 1234, 98765
VOCAB_SIZE = 512
SEQ_LEN = 128


def write_calibration_split(out: Path) -> None:
    """calibration.txt: training stories (never eval text) that static int8 builds measure activation ranges on."""
    (out / "calibration.txt").write_text("\n".join(generate_stories(CALIBRATION_STORIES, TRAIN_SEED)) + "\n")


CALIBRATION_STORIES = 40


def train_tokenizer(texts: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Like Llama's own tokenizer.json: encoding a prompt adds BOS.
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return tok


def token_stream(tok: Tokenizer, texts: list[str]) -> torch.Tensor:
    """Stories as one stream: <s> story </s> <s> story </s> ..."""
    eos = tok.token_to_id("</s>")
    ids: list[int] = []
    for enc in tok.encode_batch(texts):
        ids.extend(enc.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def model_config(tok: Tokenizer) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=VOCAB_SIZE, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
        bos_token_id=tok.token_to_id("<s>"), eos_token_id=tok.token_to_id("</s>"),
        attention_bias=False, mlp_bias=False, torch_dtype="float32",
    )


def train(model: LlamaForCausalLM, stream: torch.Tensor, steps: int, batch: int) -> None:
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01, betas=(0.9, 0.95))
    warmup = steps // 20
    schedule = lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps))  # noqa: E731
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    model.train()
    start = time.time()
    for step in range(steps):
        offsets = torch.randint(0, len(stream) - SEQ_LEN - 1, (batch,), generator=gen)
        x = torch.stack([stream[o: o + SEQ_LEN] for o in offsets])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}  {time.time() - start:.0f}s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("compile/default_model"))
    parser.add_argument("--stories", type=int, default=20000)
    parser.add_argument("--steps", type=int, default=700)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)

    texts = generate_stories(args.stories, TRAIN_SEED)
    tok = train_tokenizer(texts)
    stream = token_stream(tok, texts)
    print(f"{len(texts)} stories, {len(stream)} tokens", flush=True)
    model = LlamaForCausalLM(model_config(tok))
    print(f"{sum(p.numel() for p in model.parameters())} parameters", flush=True)
    train(model, stream, args.steps, args.batch)

    args.out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(args.out, safe_serialization=True)
    PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        model_max_length=model.config.max_position_embeddings,
    ).save_pretrained(args.out)
    (args.out / "eval.txt").write_text("\n".join(generate_stories(40, EVAL_SEED)) + "\n")
    write_calibration_split(args.out)
    for stray in ("special_tokens_map.json",):
        if (args.out / stray).exists():
            os.remove(args.out / stray)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
