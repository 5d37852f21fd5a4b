"""Read any supported checkpoint into the normalized LlamaCheckpoint. Explicit dispatch, no scanning."""

from __future__ import annotations

from pathlib import Path

from compile.checkpoint import LlamaCheckpoint
from compile.sources.hf_folder import load_hf_folder
from compile.sources.llama2c import load_llama2c
from compile.sources.meta_folder import load_meta_folder
from llamaport_errors import ConfigError

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


LOADERS = {"hf": load_hf_folder, "meta": load_meta_folder, "llama2c": load_llama2c}


def load_checkpoint(path: Path) -> LlamaCheckpoint:
    return LOADERS[detect_format(Path(path))](Path(path))
