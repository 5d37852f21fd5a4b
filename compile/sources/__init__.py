"""Read any supported checkpoint into the normalized LlamaCheckpoint. Explicit dispatch, no scanning."""

from __future__ import annotations

from pathlib import Path

from typing import TYPE_CHECKING

from llamaport.entry import load_entry
from llamaport.errors import ConfigError

if TYPE_CHECKING:
    from llamaport.compile.checkpoint import LlamaCheckpoint

SUPPORTED = ("a Hugging Face folder (config.json + *.safetensors)", "a Meta folder (params.json + consolidated.00.pth)",
             "a llama2.c checkpoint (.bin float32, legacy or version 1; or the .pt training checkpoint)")


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "config.json").is_file():
            return "hf"
        if (path / "params.json").is_file():
            return "meta"
    elif path.is_file() and path.suffix in (".bin", ".pt"):
        return "llama2c"
    elif not path.exists():
        raise ConfigError(f"{path}: no such file or folder")
    raise ConfigError(f"{path}: not a checkpoint llamaport reads; supported: " + "; ".join(SUPPORTED))


_S = "llamaport.compile.sources"
# Entry points, not imports: detecting a format (build --dry-run) must not import torch.
LOADERS = {"hf": f"{_S}.hf_folder:load_hf_folder", "meta": f"{_S}.meta_folder:load_meta_folder",
           "llama2c": f"{_S}.llama2c:load_llama2c"}


def load_checkpoint(path: Path) -> LlamaCheckpoint:
    return load_entry(LOADERS[detect_format(Path(path))])(Path(path))


def embedding_shape(path: Path, fmt: str) -> tuple[int, int] | None:
    """(vocab rows, width) of the embedding from the config alone (no weights, no torch: `build --dry-run`
    decides the large-vocabulary default with it), or None where only the weights tell (llama2.c, Llama 2's
    params.json vocab_size -1) or the config does not parse (the checkpoint stage says why)."""
    import json

    names = {"hf": ("config.json", "vocab_size", "hidden_size"), "meta": ("params.json", "vocab_size", "dim")}
    if fmt not in names:
        return None
    file, vocab_key, width_key = names[fmt]
    try:
        config = json.loads((Path(path) / file).read_text(encoding="utf-8"))
        vocab, width = config.get(vocab_key), config.get(width_key)
    except (OSError, ValueError, AttributeError):
        return None
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (vocab, width))
    return (vocab, width) if ok else None
