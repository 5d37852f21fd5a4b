"""Weights read from their file when a stage asks for them, never held by the checkpoint itself.

A 1B Llama is 5 GB in fp32: a checkpoint that held its state dict for the whole build kept it resident
beside every model a stage makes from it (the full model, the exporter's copy, the quantized reference),
18 GB at peak. `LazyWeights` is the checkpoint's state dict as a read-only mapping: each access reads the
tensor from the file (safetensors by name; a zip-format .pth through a memory map), converts it to
fp32 in Hugging Face names and layout, and returns it; nothing is cached, so a stage's model is the only
copy and is gone when the stage drops it. A full pass reads the file again, from the page cache."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import torch

Reader = Callable[[], torch.Tensor]


class LazyWeights(Mapping):
    """name -> fp32 contiguous tensor, read on each access (see the module docstring)."""

    def __init__(self, readers: dict[str, Reader], origin: str):
        self._readers = readers
        self.origin = origin

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.raw(name).to(torch.float32).contiguous()

    def raw(self, name: str) -> torch.Tensor:
        """The tensor as stored (bf16 stays bf16): the checks read it once at load."""
        return self._readers[name]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._readers)

    def __len__(self) -> int:
        return len(self._readers)

    def only(self, names) -> LazyWeights:
        return LazyWeights({n: self._readers[n] for n in names}, self.origin)

    def renamed(self, names: dict[str, str], transform: Callable[[str, torch.Tensor], torch.Tensor]) -> LazyWeights:
        """New names (new -> old) and a per-tensor transform (new name, tensor) -> tensor, still lazy."""
        return LazyWeights({new: (lambda new=new, old=old: transform(new, self._readers[old]()))
                            for new, old in names.items()}, self.origin)


def safetensors_weights(files: list[Path]) -> LazyWeights:
    """Every tensor of the (sharded) safetensors files by name; the header is read now, the data on access.
    Each access opens the file: a handle kept open would keep its memory map's touched pages resident."""
    from safetensors import safe_open

    readers: dict[str, Reader] = {}
    for f in files:
        try:
            with safe_open(f, "pt") as handle:
                names = list(handle.keys())
        except Exception as e:  # safetensors raises its own error types for truncated or corrupt files
            raise _unreadable(f, e) from e
        for name in names:
            readers[name] = lambda f=f, name=name: _read_safetensor(f, name)
    return LazyWeights(readers, str(files[0].parent))


def _read_safetensor(path: Path, name: str) -> torch.Tensor:
    from safetensors import safe_open

    try:
        with safe_open(path, "pt") as handle:
            return handle.get_tensor(name)
    except Exception as e:
        raise _unreadable(path, e) from e


def _unreadable(path: Path, e: Exception):
    from llamaport.errors import ConfigError

    return ConfigError(f"{path}: cannot read safetensors ({e}); the file may be truncated, fetch it again")


def torch_file_weights(path: Path, names: list[str], load: Callable[[Path], dict]) -> LazyWeights:
    """The tensors of a zip-format .pth, each read through `load` (a memory-mapped, weights-only
    torch.load) when asked for; the map is released with the returned tensor's copy."""
    return LazyWeights({n: (lambda n=n: load(path)[n].clone()) for n in names}, str(path))
