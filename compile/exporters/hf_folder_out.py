"""The normalized checkpoint written back out as a Hugging Face folder (config.json, model.safetensors,
tokenizer files): what onnxruntime-genai's builder and optimum's exporter read, so Meta and llama2.c
sources reach them too. The context length becomes max_position_embeddings: it sizes the exported
RoPE tables and the KV cache the runtime allocates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from llamaport.compile.checkpoint import LlamaCheckpoint
from llamaport.errors import ConfigError


def check_onnx_tokenizer(ckpt: LlamaCheckpoint) -> None:
    if ckpt.tokenizer.kind != "hf_json":
        raise ConfigError(f"{ckpt.tokenizer.path}: ONNX bundles need a Hugging Face tokenizer.json (onnxruntime-genai "
                          f"reads no {ckpt.tokenizer.kind} tokenizer); put a tokenizer.json beside the weights, e.g. "
                          "one saved by transformers' LlamaTokenizerFast")


def write_hf_folder(ckpt: LlamaCheckpoint, folder: Path, context_len: int, untie: bool = False) -> Path:
    """The checkpoint as a Hugging Face folder; with `untie`, a tied model's output layer written as its own
    weight (the same values), so an exporter quantizes it without touching the embedding."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    check_onnx_tokenizer(ckpt)
    folder.mkdir(parents=True)
    tied = ckpt.config["tie_word_embeddings"] and not untie
    config = LlamaConfig(**{**ckpt.config, "max_position_embeddings": context_len, "tie_word_embeddings": tied},
                         dtype=torch.float32)
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(folder)
    weights = {k: v for k, v in ckpt.state_dict.items() if not (tied and k == "lm_head.weight")}
    if ckpt.config["tie_word_embeddings"] and not tied:
        weights["lm_head.weight"] = ckpt.state_dict["model.embed_tokens.weight"].clone()  # safetensors refuses shared storage
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(ckpt.tokenizer.path, folder / "tokenizer.json")
    tok_config = ckpt.tokenizer.path.parent / "tokenizer_config.json"
    if tok_config.is_file():
        shutil.copyfile(tok_config, folder / "tokenizer_config.json")
    # The source's generation defaults (sampling settings of an instruct model) travel on, with our ids.
    source_generation = ckpt.tokenizer.path.parent / "generation_config.json"
    generation = json.loads(source_generation.read_text(encoding="utf-8")) if source_generation.is_file() else {}
    generation.update(bos_token_id=ckpt.bos_id, eos_token_id=ckpt.eos_ids if len(ckpt.eos_ids) > 1 else ckpt.eos_ids[0])
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2))
    return folder
