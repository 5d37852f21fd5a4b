"""Find a source's tokenizer and put it in the bundle in a form ExecuTorch's runner (pytorch_tokenizers)
reads: tokenizer.json and sentencepiece/tiktoken tokenizer.model as they are; llama2.c's tokenizer.bin
gets the (vocab size, BOS, EOS) header that pytorch_tokenizers' llama2c format starts with."""

from __future__ import annotations

import base64
import shutil
import struct
from pathlib import Path

from compile.checkpoint import TokenizerFile
from llamaport_errors import ConfigError

BUNDLE_NAMES = {"hf_json": "tokenizer.json", "sentencepiece": "tokenizer.model",
                "tiktoken": "tokenizer.model", "llama2c": "tokenizer.bin"}


def _is_tiktoken(path: Path) -> bool:
    """tiktoken files are lines of `base64-token rank`; sentencepiece models are protobuf binaries."""
    try:
        first = path.open("rb").readline().split()
        return len(first) == 2 and first[1].isdigit() and bool(base64.b64decode(first[0], validate=True))
    except Exception:
        return False


def find_tokenizer(folder: Path, origin: Path) -> TokenizerFile:
    for name, kind in (("tokenizer.json", "hf_json"), ("tokenizer.model", None), ("tokenizer.bin", "llama2c")):
        p = folder / name
        if p.is_file():
            return TokenizerFile(kind or ("tiktoken" if _is_tiktoken(p) else "sentencepiece"), p)
    raise ConfigError(f"{origin}: no tokenizer found in {folder}; expected tokenizer.json, tokenizer.model "
                      "(sentencepiece or tiktoken) or llama2.c's tokenizer.bin next to the weights")


def copy_into_bundle(tok: TokenizerFile, out_dir: Path, bos_id: int, eos_id: int, vocab_size: int) -> Path:
    dest = out_dir / BUNDLE_NAMES[tok.kind]
    if tok.kind == "llama2c":
        _llama2c_with_header(tok.path, dest, bos_id, eos_id, vocab_size)
    else:
        shutil.copyfile(tok.path, dest)
        config = tok.path.parent / "tokenizer_config.json"
        if tok.kind == "hf_json" and config.is_file():
            shutil.copyfile(config, out_dir / "tokenizer_config.json")
    return dest


def _llama2c_with_header(src: Path, dest: Path, bos_id: int, eos_id: int, vocab_size: int) -> None:
    """Karpathy's tokenizer.bin is `max_token_length` then (score, len, bytes) per token; ExecuTorch's
    llama2c tokenizer expects `vocab_size, bos, eos, max_token_length` before the same records."""
    data = src.read_bytes()
    if len(data) < 4:
        raise ConfigError(f"{src}: too short to be a llama2.c tokenizer.bin")
    pos, count = 4, 0
    while pos < len(data):
        if pos + 8 > len(data):
            raise ConfigError(f"{src}: truncated token record {count}")
        (length,) = struct.unpack_from("<i", data, pos + 4)
        pos += 8 + length
        count += 1
    if pos != len(data) or count != vocab_size:
        raise ConfigError(f"{src}: holds {count} tokens, the model's vocabulary has {vocab_size}")
    dest.write_bytes(struct.pack("<iii", vocab_size, bos_id, eos_id) + data)
