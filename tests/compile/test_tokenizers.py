"""Tokenizers reach the bundle in a form ExecuTorch's runner (pytorch_tokenizers C++) reads."""

import base64
import struct
import sys
from pathlib import Path

import pytest

from llamaport.compile.checkpoint import TokenizerFile
from llamaport.compile.sources.special_ids import special_ids
from llamaport.compile.tokenizer_files import copy_into_bundle, find_tokenizer
from llamaport.errors import ConfigError
from llamaport.runtime_tests.tokenizer import encode, load_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from storygen import generate_stories  # noqa: E402

TEXT = "Once upon a time, there was a little cat named Tom. Tom liked to play with a red ball."


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory):
    import sentencepiece as spm

    folder = tmp_path_factory.mktemp("spm")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(generate_stories(300, seed=5)))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "tokenizer"), vocab_size=400,
                                   model_type="bpe", byte_fallback=True, bos_id=1, eos_id=2, unk_id=0,
                                   minloglevel=2)
    return folder / "tokenizer.model"


def write_llama2c_tokenizer_bin(model: Path, dest: Path) -> int:
    """llama2.c's tokenizer.py export(): max_token_length, then (score, len, bytes) per token."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model))
    tokens, scores = [], []
    for i in range(sp.vocab_size()):
        t = sp.id_to_piece(i)
        if i == sp.bos_id():
            t = "\n<s>\n"
        elif i == sp.eos_id():
            t = "\n</s>\n"
        tokens.append(t.replace("▁", " ").encode("utf-8"))
        scores.append(sp.get_score(i))
    with open(dest, "wb") as f:
        f.write(struct.pack("I", max(len(t) for t in tokens)))
        for b, s in zip(tokens, scores):
            f.write(struct.pack("fI", s, len(b)))
            f.write(b)
    return sp.vocab_size()


def test_llama2c_tokenizer_bin_gets_the_header_executorch_reads(tmp_path, sentencepiece_model):
    src = tmp_path / "src"
    src.mkdir()
    vocab = write_llama2c_tokenizer_bin(sentencepiece_model, src / "tokenizer.bin")
    tok_file = find_tokenizer(src, src)
    assert tok_file.kind == "llama2c" and special_ids(tok_file) == (1, [2])
    out = tmp_path / "bundle"
    out.mkdir()
    dest, *companions = copy_into_bundle(_checkpoint(tok_file, vocab), out)
    assert dest.name == "tokenizer.model" and companions == []  # one name for every binary tokenizer
    assert struct.unpack_from("<iii", dest.read_bytes()) == (vocab, 1, 2)
    tok = load_tokenizer(dest)
    assert (tok.vocab_size(), tok.bos_tok(), tok.eos_tok()) == (vocab, 1, 2)
    import sentencepiece as spm

    assert encode(tok, TEXT, bos=True) == [1] + spm.SentencePieceProcessor(model_file=str(sentencepiece_model)).encode(TEXT)


def test_llama2c_tokenizer_bin_of_the_wrong_vocabulary_is_refused(tmp_path, sentencepiece_model):
    vocab = write_llama2c_tokenizer_bin(sentencepiece_model, tmp_path / "tokenizer.bin")
    with pytest.raises(ConfigError, match=f"holds {vocab} tokens, the model's vocabulary has 512"):
        copy_into_bundle(_checkpoint(TokenizerFile("llama2c", tmp_path / "tokenizer.bin"), 512), tmp_path)


def _checkpoint(tok_file, vocab):
    from types import SimpleNamespace
    return SimpleNamespace(tokenizer=tok_file, bos_id=1, eos_ids=[2], config={"vocab_size": vocab})


def test_sentencepiece_model_is_recognised_and_loaded_by_the_runner_classes(tmp_path, sentencepiece_model):
    found = find_tokenizer(sentencepiece_model.parent, sentencepiece_model.parent)
    assert found.kind == "sentencepiece" and special_ids(found) == (1, [2])
    tok = load_tokenizer(sentencepiece_model)
    import sentencepiece as spm

    assert encode(tok, TEXT, bos=False) == spm.SentencePieceProcessor(model_file=str(sentencepiece_model)).encode(TEXT)


def test_tiktoken_file_is_told_apart_from_sentencepiece(tmp_path):
    lines = [f"{base64.b64encode(bytes([i])).decode()} {i}" for i in range(256)]
    (tmp_path / "tokenizer.model").write_text("\n".join(lines) + "\n")
    found = find_tokenizer(tmp_path, tmp_path)
    assert found.kind == "tiktoken"
    assert special_ids(found) == (256, [257, 265])  # Llama 3 convention: specials follow the base ranks


def _records(data: bytes):
    pos, out = 4, []
    while pos < len(data):
        (length,) = struct.unpack_from("<i", data, pos + 4)
        out.append((pos, data[pos + 8: pos + 8 + length]))
        pos += 8 + length
    return out


def test_llama2c_tokenizer_bin_without_a_single_space_piece_is_refused_not_a_segfault(tmp_path, sentencepiece_model):
    """pytorch_tokenizers' llama2c encoder indexes with -1 when no piece is " " (exit 139, no message)."""
    vocab = write_llama2c_tokenizer_bin(sentencepiece_model, tmp_path / "tokenizer.bin")
    data = bytearray((tmp_path / "tokenizer.bin").read_bytes())
    (pos, piece), = [(p, b) for p, b in _records(bytes(data)) if b == b" "]
    data[pos + 8] = ord("~")  # the one single-space piece is now "~": same lengths, no space
    (tmp_path / "tokenizer.bin").write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=r'no token is a single space \(" "\)'):
        copy_into_bundle(_checkpoint(TokenizerFile("llama2c", tmp_path / "tokenizer.bin"), vocab), tmp_path)


def test_llama2c_tokenizer_bin_with_a_negative_record_length_is_refused(tmp_path, sentencepiece_model):
    vocab = write_llama2c_tokenizer_bin(sentencepiece_model, tmp_path / "tokenizer.bin")
    data = bytearray((tmp_path / "tokenizer.bin").read_bytes())
    pos = _records(bytes(data))[3][0]
    struct.pack_into("<i", data, pos + 4, -8)  # would step back onto itself: a loop without end
    (tmp_path / "tokenizer.bin").write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="token record 3 claims -8 bytes"):
        copy_into_bundle(_checkpoint(TokenizerFile("llama2c", tmp_path / "tokenizer.bin"), vocab), tmp_path)


def test_a_tokenizer_that_crashes_the_cpp_encoder_is_one_line_from_the_child_probe(tmp_path, sentencepiece_model):
    """The guard itself, on a file past the validators: the bundle-format llama2.c tokenizer without a
    single-space piece segfaults pytorch_tokenizers' encoder (exit 139 in-process); the child probe turns it
    into one line, and the parent process lives on."""
    from llamaport.compile.tokenizer_guard import probe_in_child

    vocab = write_llama2c_tokenizer_bin(sentencepiece_model, tmp_path / "tokenizer.bin")
    data = bytearray((tmp_path / "tokenizer.bin").read_bytes())
    (pos, _), = [(p, b) for p, b in _records(bytes(data)) if b == b" "]
    data[pos + 8] = ord("~")
    crashing = tmp_path / "tokenizer.model"
    crashing.write_bytes(struct.pack("<iii", vocab, 1, 2) + bytes(data))  # the header ExecuTorch's llama2c reader wants
    text = tmp_path / "eval.txt"
    text.write_text(TEXT)
    with pytest.raises(ConfigError, match=r"source/tokenizer.bin: ExecuTorch's tokenizer \(pytorch_tokenizers\) crashed "
                                          r"reading it or encoding the eval text with it \(SIGSEGV\)"):
        probe_in_child(crashing, text, shown_as=Path("source/tokenizer.bin"))
    probe_in_child(sentencepiece_model, text, shown_as=sentencepiece_model)  # a sound file passes
