"""Model sources spoiled one field or file at a time: each is refused by `llamaport build` in one line naming the
file and the field, before any export. One case per row; the bundled model written in every source format is
the valid starting point."""

from __future__ import annotations

import json
import shutil
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from llamaport.compile.pipeline import DEFAULT_MODEL
from tests import source_writers
from tests.bad_inputs.contract import DELETE, assert_refused, edit_json, invoke


def _config(**changes):
    return lambda src, tmp: edit_json(src / "config.json", **changes)


def _weights(edit):
    def spoil(src, tmp):
        sd = load_file(src / "model.safetensors")
        edit(sd)
        save_file(sd, src / "model.safetensors")
    return spoil


def _write(name, data):
    def spoil(src, tmp):
        (src / name).write_bytes(data) if isinstance(data, bytes) else (src / name).write_text(data)
    return spoil


def _nan_in(sd):
    sd["model.layers.0.mlp.up_proj.weight"][3, 5] = float("nan")


def _garbage_sentencepiece(src, tmp):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (src / name).unlink()
    (src / "tokenizer.model").write_bytes(b"\x0a\xff\xff\xff\xff\x0f garbage, not a ModelProto" * 4)


def _bad_tiktoken(src, tmp):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (src / name).unlink()
    (src / "tokenizer.model").write_text("IQ== 0\nIg== 1\nnot-base64!! x\n")


# name: (spoil(model folder, tmp), what the one line must name). All on a copy of the bundled HF folder.
HF_CASES = {
    "hidden_size 0": (_config(hidden_size=0), ("config.json: hidden_size must be a positive integer, got 0",)),
    "hidden_size as text": (_config(hidden_size="128"), ("config.json: hidden_size must be a positive integer, got '128'",)),
    "hidden_size true": (_config(hidden_size=True), ("config.json: hidden_size must be a positive integer, got True",)),
    "num_attention_heads 0": (_config(num_attention_heads=0), ("config.json: num_attention_heads must be a positive integer",)),
    "heads that do not divide hidden_size": (_config(num_attention_heads=3, num_key_value_heads=1, head_dim=DELETE),
                                             ("config.json: hidden_size 128 is not a multiple of num_attention_heads 3",)),
    "kv heads that do not divide heads": (_config(num_key_value_heads=3),
                                          ("config.json: num_attention_heads 4 is not a multiple of num_key_value_heads 3",)),
    "num_hidden_layers 0": (_config(num_hidden_layers=0), ("config.json: num_hidden_layers must be a positive integer, got 0",)),
    "num_hidden_layers negative": (_config(num_hidden_layers=-2), ("config.json: num_hidden_layers must be a positive integer, got -2",)),
    "num_hidden_layers two billion": (_config(num_hidden_layers=2**31),
                                      ("the config says num_hidden_layers 2147483648, the weights hold 4 layers",)),
    "vocab_size 0": (_config(vocab_size=0), ("config.json: vocab_size must be a positive integer, got 0",)),
    "vocab_size a float": (_config(vocab_size=512.5), ("config.json: vocab_size must be a positive integer, got 512.5",)),
    "intermediate_size missing": (_config(intermediate_size=DELETE), ("config.json: missing field intermediate_size",)),
    "head_dim 0": (_config(head_dim=0), ("config.json: head_dim must be a positive integer, got 0",)),
    "rms_norm_eps as text": (_config(rms_norm_eps="tiny"), ("config.json: rms_norm_eps must be a number above 0 and below 1, got 'tiny'",)),
    "rms_norm_eps negative": (_config(rms_norm_eps=-1e-5), ("config.json: rms_norm_eps must be a number above 0 and below 1",)),
    "rope_theta null": (_config(rope_theta=None), ("config.json: rope_theta must be a number above 1, got None",)),
    "rope_theta 0": (_config(rope_theta=0), ("config.json: rope_theta must be a number above 1, got 0",)),
    "max_position_embeddings 0": (_config(max_position_embeddings=0),
                                  ("config.json: max_position_embeddings must be a positive integer, got 0",)),
    "max_position_embeddings below the shortest context": (
        _config(max_position_embeddings=16), ("config.json: max_position_embeddings 16 is below the shortest context llamaport builds (32)",)),
    "rope_scaling a string": (_config(rope_scaling="llama3"), ("config.json: rope_scaling must be a JSON object or null, got 'llama3'",)),
    "rope_scaling of another kind": (_config(rope_scaling={"rope_type": "yarn", "factor": 4.0}),
                                     ("config.json: rope_scaling type 'yarn' is not supported",)),
    "rope_scaling without factor": (_config(rope_scaling={"rope_type": "llama3"}), ("config.json: rope_scaling needs a numeric factor",)),
    "tie_word_embeddings as text": (_config(tie_word_embeddings="yes"),
                                    ("config.json: tie_word_embeddings must be true or false, got 'yes'",)),
    "bos_token_id as text": (_config(bos_token_id="1"), ("config.json: bos_token_id must be an integer token id, got '1'",)),
    "eos_token_id list with text": (_config(eos_token_id=[2, "x"]),
                                    ("config.json: eos_token_id must be an integer token id or a list of them, got [2, 'x']",)),
    "eos_token_id outside the tokenizer": (_config(eos_token_id=[2, 9999]), ("eos_token_id 9999 is outside the tokenizer's vocabulary",)),
    "hidden_act gelu": (_config(hidden_act="gelu"), ("config.json: hidden_act 'gelu' is not supported",)),
    "attention_bias": (_config(attention_bias=True), ("config.json: attention_bias=true is not a Llama layout",)),
    "config.json empty": (_write("config.json", ""), ("config.json: not valid JSON",)),
    "config.json cut short": (_write("config.json", '{"hidden_size": 12'), ("config.json: not valid JSON",)),
    "config.json not UTF-8": (_write("config.json", b'{"a": "\xff\xfe"}'), ("config.json: not UTF-8 text",)),
    "no architecture at all": (_config(architectures=DELETE, model_type=DELETE),
                               ("config.json: architecture none given is not supported",)),
    "no weights file": (lambda src, tmp: (src / "model.safetensors").unlink(), ("no model.safetensors",)),
    "weights file empty": (_write("model.safetensors", b""), ("model.safetensors: cannot read safetensors",)),
    "weights header garbage": (_write("model.safetensors", struct.pack("<Q", 2**40) + b"{}" * 8),
                               ("model.safetensors: cannot read safetensors",)),
    "a weight missing": (_weights(lambda sd: sd.pop("model.layers.1.self_attn.k_proj.weight")),
                         ("missing weights ['model.layers.1.self_attn.k_proj.weight']",)),
    "a weight of integers": (_weights(lambda sd: sd.update({"model.norm.weight": sd["model.norm.weight"].to(torch.int8)})),
                             ("model.norm.weight is int8; llamaport reads floating-point weights",)),
    "a NaN in a weight": (_weights(_nan_in), ("model.layers.0.mlp.up_proj.weight holds 1 NaN or infinite values",)),
    "an infinity in the embedding": (_weights(lambda sd: sd["model.embed_tokens.weight"][7].fill_(float("inf"))),
                                     ("model.embed_tokens.weight holds 128 NaN or infinite values",)),
    "a weight of the wrong shape": (_weights(lambda sd: sd.update({"model.norm.weight": torch.ones(64)})),
                                    ("model.norm.weight has shape (64,), the config implies (128,)",)),
    "tokenizer.json not JSON": (_write("tokenizer.json", "{nope"), ("tokenizer.json: not valid JSON",)),
    "tokenizer.json a list": (_write("tokenizer.json", "[]"), ("tokenizer.json: a JSON list where a JSON object is expected",)),
    "tokenizer.json without a vocabulary": (lambda src, tmp: edit_json(src / "tokenizer.json", model={"type": "BPE"}),
                                            ("tokenizer.json: has no \"model\" with a \"vocab\"",)),
    "tokenizer.model that is not sentencepiece": (_garbage_sentencepiece, ("tokenizer.model: not a sentencepiece model",)),
    "tokenizer.model, tiktoken with a bad line": (_bad_tiktoken, ("tokenizer.model: line 3 is not `base64-token rank`",)),
}


@pytest.fixture
def hf_copy(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL, folder)
    return folder


@pytest.mark.parametrize("case", sorted(HF_CASES))
def test_spoiled_hf_folder_is_refused_in_one_line(case, tmp_path, hf_copy):
    spoil, needles = HF_CASES[case]
    spoil(hf_copy, tmp_path)
    assert_refused(invoke(["build", hf_copy, "--out", "{tmp}/out"], tmp_path), tmp_path / "out", *needles)


def _params(**changes):
    return lambda folder: edit_json(folder / "params.json", **changes)


def _consolidated(obj):
    return lambda folder: torch.save(obj, folder / "consolidated.00.pth")


META_CASES = {
    "params dim 0": (_params(dim=0), ("params.json: dim must be a positive integer, got 0",)),
    "params n_heads missing": (_params(n_heads=DELETE), ("params.json: missing field n_heads",)),
    "params n_layers as text": (_params(n_layers="2"), ("params.json: n_layers must be a positive integer, got '2'",)),
    "params unknown key": (_params(n_experts=8), ("params.json: unknown keys ['n_experts']",)),
    "params norm_eps 0": (_params(norm_eps=0), ("params.json: norm_eps must be a number above 0 and below 1, got 0",)),
    "params vocab_size not the embedding's": (_params(vocab_size=1000),
                                              ("model.embed_tokens.weight has shape (512, 128), the config implies (1000, 128)",)),
    "params.json not an object": (lambda f: (f / "params.json").write_text("3"), ("params.json: a JSON int where a JSON object",)),
    "consolidated.00.pth a bare tensor": (_consolidated(torch.zeros(3)),
                                          ("consolidated.00.pth: holds a Tensor, not a state dict of tensors",)),
    "consolidated.00.pth garbage": (lambda f: (f / "consolidated.00.pth").write_bytes(b"PK\x03\x04garbage" * 10),
                                    ("consolidated.00.pth: not a readable PyTorch checkpoint",)),
    "consolidated.00.pth without the FFN": (
        lambda f: torch.save({k: v for k, v in torch.load(f / "consolidated.00.pth").items() if "feed_forward.w1" not in k},
                             f / "consolidated.00.pth"), ("missing field or weight layers.0.feed_forward.w1.weight",)),
    "two shards": (lambda f: shutil.copyfile(f / "consolidated.00.pth", f / "consolidated.01.pth"), ("2 model-parallel shards",)),
    "no shard": (lambda f: (f / "consolidated.00.pth").unlink(), ("no consolidated.*.pth next to params.json",)),
    "no tokenizer": (lambda f: (f / "tokenizer.json").unlink(), ("no tokenizer found",)),
    "tokenizer_config.json missing": (lambda f: (f / "tokenizer_config.json").unlink(),
                                      ("tokenizer.json without tokenizer_config.json",)),
    "bos_token not a special token": (lambda f: edit_json(f / "tokenizer_config.json", bos_token="hello"),
                                      ("tokenizer_config.json: bos_token 'hello' is not a special token",)),
}


@pytest.mark.parametrize("case", sorted(META_CASES))
def test_spoiled_meta_folder_is_refused_in_one_line(case, tmp_path, default_checkpoint):
    folder = source_writers.write_meta_folder(default_checkpoint, tmp_path / "meta")
    spoil, needles = META_CASES[case]
    spoil(folder)
    assert_refused(invoke(["build", folder, "--out", "{tmp}/out"], tmp_path), tmp_path / "out", *needles)


def _header(**dims):
    names = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "max_seq_len")

    def spoil(path):
        data = bytearray(path.read_bytes())
        values = list(struct.unpack_from("<7i", data, 0))
        for k, v in dims.items():
            values[names.index(k)] = v
        struct.pack_into("<7i", data, 0, *values)
        path.write_bytes(bytes(data))
    return spoil


def _model_args(**changes):
    def spoil(path):
        ckpt = torch.load(path)
        ckpt["model_args"].update(changes)
        torch.save(ckpt, path)
    return spoil


LLAMA2C_CASES = {
    "bin empty": ("bin", lambda p: p.write_bytes(b""), ("model.bin: 0 bytes is too short for a llama2.c header",)),
    "bin n_heads 0": ("bin", _header(n_heads=0), ("model.bin: header (dim=128", "n_heads=0", "is not a llama2.c model")),
    "bin heads that do not divide dim": ("bin", _header(n_heads=3), ("n_heads=3", "is not a llama2.c model")),
    "bin negative layers": ("bin", _header(n_layers=-1), ("n_layers=-1", "is not a llama2.c model")),
    "bin one byte too many": ("bin", lambda p: p.write_bytes(p.read_bytes() + b"\0"), ("bytes, but its header (version 0) implies",)),
    "bin quantized version 2": ("bin", lambda p: p.write_bytes(struct.pack("<Ii", 0x616B3432, 2) + bytes(300)),
                                ("model.bin: llama2.c version 2 (quantized) is not supported",)),
    "bin without tokenizer": ("bin", lambda p: (p.parent / "tokenizer.json").unlink(), ("no tokenizer found",)),
    "pt without model_args": ("pt", lambda p: torch.save({"model": {}}, p), ("ckpt.pt: not a llama2.c training checkpoint",)),
    "pt a list": ("pt", lambda p: torch.save([1, 2], p), ("ckpt.pt: not a llama2.c training checkpoint",)),
    "pt model_args dim missing": ("pt", lambda p: _drop_arg(p, "dim"), ("ckpt.pt: missing field dim",)),
    "pt model_args n_layers as text": ("pt", _model_args(n_layers="x"), ("ckpt.pt: n_layers must be a positive integer, got 'x'",)),
    "pt model is not a dict": ("pt", lambda p: torch.save({"model": [1], "model_args": {"dim": 128}}, p),
                               ("ckpt.pt: 'model' holds a list, not a state dict of tensors",)),
}


def _drop_arg(path, key):
    ckpt = torch.load(path)
    ckpt["model_args"].pop(key)
    torch.save(ckpt, path)


@pytest.mark.parametrize("case", sorted(LLAMA2C_CASES))
def test_spoiled_llama2c_checkpoint_is_refused_in_one_line(case, tmp_path, default_checkpoint):
    kind, spoil, needles = LLAMA2C_CASES[case]
    path = (source_writers.write_llama2c_bin(default_checkpoint, tmp_path / "l2c", version=0) if kind == "bin"
            else source_writers.write_llama2c_pt(default_checkpoint, tmp_path / "l2c"))
    spoil(path)
    assert_refused(invoke(["build", path, "--out", "{tmp}/out"], tmp_path), tmp_path / "out", *needles)
