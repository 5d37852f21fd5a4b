"""Find a source's tokenizer and put it in the bundle's model/ folder in a form ExecuTorch's runner
(pytorch_tokenizers) and onnxruntime-genai read, under a name that does not depend on the source:
`tokenizer.json` for a Hugging Face tokenizer, `tokenizer.model` for every binary one (sentencepiece and
tiktoken as they are; llama2.c's tokenizer.bin with the (vocab size, BOS, EOS) header pytorch_tokenizers'
llama2c format starts with). ExecuTorch's runners tell the binary kinds apart by content. Beside it go the
source's tokenizer_config.json (its chat template, where it has one) and generation_config.json."""

from __future__ import annotations

import base64
import shutil
import struct
from pathlib import Path

from llamaport.compile.checkpoint import TokenizerFile
from llamaport.errors import ConfigError

BUNDLE_NAMES = {"hf_json": "tokenizer.json", "sentencepiece": "tokenizer.model",
                "tiktoken": "tokenizer.model", "llama2c": "tokenizer.model"}
# Files beside the tokenizer that carry an instruct model's chat template and the source's sampling defaults.
COMPANIONS = ("tokenizer_config.json", "chat_template.jinja", "generation_config.json")


def _is_tiktoken(path: Path) -> bool:
    """tiktoken files are lines of `base64-token rank`; sentencepiece models are protobuf binaries."""
    with path.open("rb") as f:
        return _is_rank_line(f.readline().split())


def find_tokenizer(folder: Path, origin: Path) -> TokenizerFile:
    """The source's tokenizer file, its kind told by name and content, and checked to be that kind."""
    for name, kind in (("tokenizer.json", "hf_json"), ("tokenizer.model", None), ("tokenizer.bin", "llama2c")):
        p = folder / name
        if p.is_file():
            found = TokenizerFile(kind or ("tiktoken" if _is_tiktoken(p) else "sentencepiece"), p)
            _check_kind(found)
            return found
    raise ConfigError(f"{origin}: no tokenizer found in {folder}; expected tokenizer.json, tokenizer.model "
                      "(sentencepiece or tiktoken) or llama2.c's tokenizer.bin next to the weights")


def _check_kind(tok: TokenizerFile) -> None:
    """The file parses as what its kind says (llama2.c's records are checked as they are copied)."""
    if tok.kind == "hf_json":
        from llamaport.compile.sources.hf_folder import read_json

        model = read_json(tok.path).get("model")
        if not isinstance(model, dict) or not isinstance(model.get("vocab"), (dict, list)):
            raise ConfigError(f"{tok.path}: has no \"model\" with a \"vocab\"; not a Hugging Face tokenizer.json")
    elif tok.kind == "sentencepiece":
        import sentencepiece

        try:
            sentencepiece.SentencePieceProcessor(model_file=str(tok.path))
        except Exception as e:  # sentencepiece raises RuntimeError or OSError with its parser's message
            raise ConfigError(f"{tok.path}: not a sentencepiece model ({' '.join(str(e).split())}); nor tiktoken's "
                              "`base64-token rank` lines") from e
    elif tok.kind == "tiktoken":
        for number, line in enumerate(tok.path.open("rb"), 1):
            fields = line.split()
            if fields and not _is_rank_line(fields):
                raise ConfigError(f"{tok.path}: line {number} is not `base64-token rank`; not a tiktoken tokenizer.model")


def _is_rank_line(fields: list[bytes]) -> bool:
    try:
        return len(fields) == 2 and fields[1].isdigit() and bool(base64.b64decode(fields[0], validate=True))
    except ValueError:
        return False


def bundle_tokenizer_path(ckpt) -> str:
    """The tokenizer's path inside the bundle."""
    return f"model/{BUNDLE_NAMES[ckpt.tokenizer.kind]}"


def copy_into_bundle(ckpt, model_dir: Path) -> list[Path]:
    """The tokenizer (and its companions, where the source has them) into model/; returns what was written."""
    tok = ckpt.tokenizer
    dest = model_dir / BUNDLE_NAMES[tok.kind]
    if tok.kind == "llama2c":
        _llama2c_with_header(tok.path, dest, ckpt.bos_id, ckpt.eos_ids[0], ckpt.config["vocab_size"])
    elif tok.path.resolve() != dest.resolve():  # a converted tokenizer.json is written in place
        shutil.copyfile(tok.path, dest)
    written = [dest]
    for name in COMPANIONS:
        src = tok.path.parent / name
        if src.is_file() and src.resolve() != (model_dir / name).resolve():
            shutil.copyfile(src, model_dir / name)
            written.append(model_dir / name)
    return written


def _llama2c_with_header(src: Path, dest: Path, bos_id: int, eos_id: int, vocab_size: int) -> None:
    """Karpathy's tokenizer.bin is `max_token_length` then (score, len, bytes) per token; ExecuTorch's
    llama2c tokenizer expects `vocab_size, bos, eos, max_token_length` before the same records."""
    data = src.read_bytes()
    if len(data) < 4:
        raise ConfigError(f"{src}: too short to be a llama2.c tokenizer.bin")
    (max_length,) = struct.unpack_from("<i", data, 0)
    pos, count, has_space = 4, 0, False
    while pos < len(data):
        if pos + 8 > len(data):
            raise ConfigError(f"{src}: truncated token record {count}")
        (length,) = struct.unpack_from("<i", data, pos + 4)
        if length < 0 or length > max(max_length, 0) or pos + 8 + length > len(data):
            raise ConfigError(f"{src}: token record {count} claims {length} bytes (max_token_length {max_length}, "
                              f"{len(data) - pos - 8} left in the file); not a llama2.c tokenizer.bin")
        has_space = has_space or data[pos + 8: pos + 8 + length] == b" "
        pos += 8 + length
        count += 1
    if pos != len(data) or count != vocab_size:
        raise ConfigError(f"{src}: holds {count} tokens, the model's vocabulary has {vocab_size}")
    # pytorch_tokenizers' llama2c encoder looks the single-space piece up for its dummy prefix and indexes
    # with the -1 it gets when there is none: a segfault (exit 139, no message), so it is refused here.
    if not has_space:
        raise ConfigError(f"{src}: no token is a single space (\" \"), which llama2.c's encoder needs; "
                          "export the tokenizer with llama2.c's tokenizer.py")
    dest.write_bytes(struct.pack("<iii", vocab_size, bos_id, eos_id) + data)
