"""The normalized checkpoint written back out as a Hugging Face folder (config.json, model.safetensors,
tokenizer files): what onnxruntime-genai's builder and optimum's exporter read, so Meta and llama2.c
sources reach them too. The context length becomes max_position_embeddings (at least llama3 rope
scaling's original_max_position_embeddings): it sizes the exported RoPE tables."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from llamaport.compile.checkpoint import LlamaCheckpoint
from llamaport.errors import ConfigError


def check_onnx_tokenizer(ckpt: LlamaCheckpoint) -> None:
    if ckpt.tokenizer.kind != "hf_json":
        raise ConfigError(f"{ckpt.tokenizer.path}: ONNX bundles need a Hugging Face tokenizer.json; llamaport converts "
                          f"sentencepiece and tiktoken tokenizer.model files, not a {ckpt.tokenizer.kind} tokenizer; put "
                          "a tokenizer.json beside the weights, e.g. one saved by transformers' LlamaTokenizerFast")


def _positions(cfg: dict, context_len: int) -> int:
    """The context, or for llama3 rope scaling at least its original_max_position_embeddings: transformers
    (and the builder reading the config) warn that the scaling is ill-defined below it; the runtime still
    allocates only the bundle's context (genai_config's max_length)."""
    original = (cfg.get("rope_scaling") or {}).get("original_max_position_embeddings")
    return max(context_len, int(original)) if original else context_len


def write_hf_folder(ckpt: LlamaCheckpoint, folder: Path, context_len: int, untie: bool = False) -> Path:
    """The checkpoint as a Hugging Face folder; with `untie`, a tied model's output layer written as its own
    weight (the same values), so an exporter quantizes it without touching the embedding."""
    import torch
    from transformers import LlamaConfig

    check_onnx_tokenizer(ckpt)
    folder.mkdir(parents=True)
    tied = ckpt.config["tie_word_embeddings"] and not untie
    config = LlamaConfig(**{**ckpt.config, "max_position_embeddings": _positions(ckpt.config, context_len),
                            "tie_word_embeddings": tied}, dtype=torch.float32)
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(folder)
    names = {k: k for k in ckpt.state_dict if not (tied and k == "lm_head.weight")}
    if ckpt.config["tie_word_embeddings"] and not tied:
        names["lm_head.weight"] = "model.embed_tokens.weight"  # read again: its own tensor, as safetensors wants
    write_shards(ckpt.state_dict, names, folder)
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


SHARD_BYTES = 1 << 30  # a shard's size: what is held in memory while it is written


def write_shards(weights, names: dict[str, str], folder: Path) -> None:
    """Tensors (file name -> name in `weights`) as Hugging Face's sharded safetensors, one shard of at most
    SHARD_BYTES held at a time (a 1B model's 5 GB of fp32 was one dict in memory beside everything else);
    one model.safetensors when a single shard holds them all."""
    shards, current, size = [], {}, 0
    for out_name, name in names.items():
        t = weights[name].contiguous()
        if current and size + t.numel() * t.element_size() > SHARD_BYTES:
            shards.append(_save_shard(current, folder, len(shards)))
            current, size = {}, 0
        current[out_name], size = t, size + t.numel() * t.element_size()
    shards.append(_save_shard(current, folder, len(shards)))
    if len(shards) == 1:
        shards[0][0].rename(folder / "model.safetensors")
        return
    total = len(shards)
    weight_map = {}
    for i, (path, tensors) in enumerate(shards):
        final = folder / f"model-{i + 1:05d}-of-{total:05d}.safetensors"
        path.rename(final)
        weight_map.update({n: final.name for n in tensors})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=2))


def _save_shard(tensors: dict, folder: Path, index: int) -> tuple[Path, list[str]]:
    from safetensors.torch import save_file

    path = folder / f"shard-{index}.safetensors.partial"
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path, list(tensors)
