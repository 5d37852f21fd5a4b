"""Write a normalized checkpoint out as the other source formats, the way their own tools do
(Meta's consolidated.00.pth + params.json; llama2.c's export.py legacy and version-1 .bin, and its
train.py .pt checkpoint), so the readers are tested against independently laid-out files."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import torch

from llamaport.compile.checkpoint import LlamaCheckpoint
from llamaport.compile.layout import hf_to_meta


def _meta_sd(ckpt: LlamaCheckpoint) -> dict:
    sd = {k: v.clone() for k, v in hf_to_meta(ckpt.state_dict, ckpt.config).items()}
    if ckpt.config["tie_word_embeddings"]:
        sd.pop("output.weight")
    return sd


def _copy_tokenizer(ckpt: LlamaCheckpoint, folder: Path) -> None:
    shutil.copyfile(ckpt.tokenizer.path, folder / ckpt.tokenizer.path.name)
    config = ckpt.tokenizer.path.parent / "tokenizer_config.json"
    if config.is_file():
        shutil.copyfile(config, folder / "tokenizer_config.json")


def write_meta_folder(ckpt: LlamaCheckpoint, folder: Path) -> Path:
    folder.mkdir(parents=True)
    c = ckpt.config
    params = {"dim": c["hidden_size"], "n_layers": c["num_hidden_layers"], "n_heads": c["num_attention_heads"],
              "n_kv_heads": c["num_key_value_heads"], "vocab_size": c["vocab_size"], "norm_eps": c["rms_norm_eps"],
              "rope_theta": c["rope_theta"], "use_scaled_rope": bool(c["rope_scaling"]),
              "max_seq_len": c["max_position_embeddings"]}
    if c["rope_scaling"]:
        params["rope_scale_factor"] = int(c["rope_scaling"]["factor"])
    (folder / "params.json").write_text(json.dumps(params))
    torch.save(_meta_sd(ckpt), folder / "consolidated.00.pth")
    _copy_tokenizer(ckpt, folder)
    return folder


def _fp32(f, t: torch.Tensor) -> None:
    f.write(t.detach().to(torch.float32).contiguous().numpy().tobytes())


def write_llama2c_bin(ckpt: LlamaCheckpoint, folder: Path, version: int) -> Path:
    """llama2.c export.py: legacy_export (version 0) or version1_export."""
    folder.mkdir(parents=True)
    c, sd = ckpt.config, hf_to_meta(ckpt.state_dict, ckpt.config)
    L, dim, seq = c["num_hidden_layers"], c["hidden_size"], c["max_position_embeddings"]
    shared = c["tie_word_embeddings"]
    dims = [dim, c["intermediate_size"], L, c["num_attention_heads"], c["num_key_value_heads"], c["vocab_size"], seq]
    layer = lambda name: [sd[f"layers.{i}.{name}.weight"] for i in range(L)]  # noqa: E731
    path = folder / "model.bin"
    with open(path, "wb") as f:
        if version == 1:
            f.write(struct.pack("<Ii", 0x616B3432, 1) + struct.pack("<7i", *dims) + struct.pack("B", int(shared)))
            f.write(b"\0" * (256 - f.tell()))
            weights = layer("attention_norm") + layer("ffn_norm") + [sd["norm.weight"], sd["tok_embeddings.weight"]]
            for n in ("attention.wq", "attention.wk", "attention.wv", "attention.wo",
                      "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"):
                weights += layer(n)
        else:
            dims[5] = dims[5] if shared else -dims[5]
            f.write(struct.pack("<7i", *dims))
            weights = [sd["tok_embeddings.weight"]] + layer("attention_norm")
            for n in ("attention.wq", "attention.wk", "attention.wv", "attention.wo", "ffn_norm",
                      "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"):
                weights += layer(n)
            half = c["head_dim"] // 2
            freqs = torch.outer(torch.arange(seq).float(), 1.0 / (c["rope_theta"] ** (torch.arange(0, half * 2, 2).float() / (half * 2))))
            weights += [sd["norm.weight"], torch.cos(freqs), torch.sin(freqs)]
        if not shared:
            weights.append(sd["output.weight"])
        for w in weights:
            _fp32(f, w)
    _copy_tokenizer(ckpt, folder)
    return path


def write_llama2c_pt(ckpt: LlamaCheckpoint, folder: Path) -> Path:
    """llama2.c train.py's checkpoint: model (possibly torch.compile-prefixed) + model_args + optimizer state."""
    folder.mkdir(parents=True)
    c = ckpt.config
    model_args = {"dim": c["hidden_size"], "n_layers": c["num_hidden_layers"], "n_heads": c["num_attention_heads"],
                  "n_kv_heads": c["num_key_value_heads"], "vocab_size": c["vocab_size"], "multiple_of": 32,
                  "max_seq_len": c["max_position_embeddings"], "dropout": 0.0}
    model = {f"_orig_mod.{k}": v for k, v in hf_to_meta(ckpt.state_dict, c).items()}
    path = folder / "ckpt.pt"
    torch.save({"model": model, "model_args": model_args, "iter_num": 1000, "best_val_loss": 1.0,
                "optimizer": {"state": {}, "param_groups": [{"lr": 3e-4}]}, "config": {"batch_size": 32}}, path)
    _copy_tokenizer(ckpt, folder)
    return path
