"""Tokenizer files of the Meta kinds, made here from the project's own story text (no hub): a
sentencepiece tokenizer.model as Llama 2 ships, and a tiktoken tokenizer.model as Llama 3 ships
(base64 token, rank per line; its 256 special tokens follow the ranks)."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from storygen import generate_stories  # noqa: E402


def story_corpus(folder: Path, stories: int = 300, seed: int = 5) -> Path:
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(generate_stories(stories, seed=seed)))
    return corpus


def write_sentencepiece_model(folder: Path, vocab_size: int = 400) -> Path:
    """A BPE sentencepiece model with byte fallback, BOS 1, EOS 2, as Llama 2's."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(input=str(story_corpus(folder)), model_prefix=str(folder / "tokenizer"),
                                   vocab_size=vocab_size, model_type="bpe", byte_fallback=True, bos_id=1, eos_id=2,
                                   unk_id=0, minloglevel=2)
    (folder / "corpus.txt").unlink()
    (folder / "tokenizer.vocab").unlink()
    return folder / "tokenizer.model"


def write_tiktoken_model(folder: Path, vocab_size: int = 400) -> Path:
    """A byte-level BPE trained with Hugging Face tokenizers on the stories, written as tiktoken ranks: the
    256 bytes, then each merge's token in merge order (a token's rank is its merge's priority)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from tokenizers.pre_tokenizers import ByteLevel

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=ByteLevel.alphabet(), show_progress=False)
    tok.train([str(story_corpus(folder))], trainer)
    (folder / "corpus.txt").unlink()
    byte_of = {ch: b for b, ch in _bytes_to_unicode().items()}
    ranked = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    singles = sorted((t for t, _ in ranked if len(t) == 1), key=lambda t: byte_of[t])
    merges = [t for t, _ in ranked if len(t) > 1]
    lines = [f"{base64.b64encode(bytes(byte_of[c] for c in t)).decode()} {rank}"
             for rank, t in enumerate(singles + merges)]
    path = folder / "tokenizer.model"
    path.write_text("\n".join(lines) + "\n")
    return path


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, which byte-level BPE vocabularies are written in."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))
