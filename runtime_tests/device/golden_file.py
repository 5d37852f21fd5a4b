"""The golden outputs' inputs, read from check/golden.safetensors with the standard library and numpy: a
safetensors file is an 8-byte header length, a JSON header (tensor dtypes, shapes, offsets and the
metadata string), then the raw tensor bytes. The device needs the ids to feed and, where a reference
keeps only its top-k logits, which ids to score."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .scores import KeptIds

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "F16": np.float16}


@dataclass(frozen=True)
class GoldenInputs:
    ids: list[int]  # BOS + eval text, teacher-forced
    prompts: list[list[int]]
    prompt_texts: list[str]
    greedy_tokens: int
    latency_prompt: list[int]
    latency_prompt_text: str
    topk_ids: dict[str, KeptIds]  # reference name -> its kept ids, for references that keep an adaptive top-k
    full_references: tuple[str, ...]  # references that keep every logit


def read_tensor(path: Path, name: str) -> np.ndarray:
    header, start = _header(path)
    info = header[name]
    begin, end = info["data_offsets"]
    with open(path, "rb") as f:
        f.seek(start + begin)
        data = f.read(end - begin)
    return np.frombuffer(data, dtype=DTYPES[info["dtype"]]).reshape(info["shape"])


def _header(path: Path) -> tuple[dict, int]:
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > 100 * 2**20:
            raise ValueError(f"{path}: safetensors header of {length} bytes; not a golden file")
        return json.loads(f.read(length)), 8 + length


def read_golden_inputs(path: Path) -> GoldenInputs:
    header, _ = _header(path)
    meta = json.loads(header["__metadata__"]["llamaport_golden"])
    kinds = meta["references"]
    topk = {name: kept_ids(path, name) for name, kind in kinds.items() if kind == "topk"}
    return GoldenInputs(ids=meta["ids"], prompts=meta["prompts"], prompt_texts=meta["prompt_texts"],
                        greedy_tokens=meta["greedy_tokens"], latency_prompt=meta["latency_prompt"],
                        latency_prompt_text=meta["latency_prompt_text"], topk_ids=topk,
                        full_references=tuple(n for n, k in kinds.items() if k == "full"))


def kept_ids(path: Path, name: str) -> KeptIds:
    mass, pmax = read_tensor(path, f"{name}.tail_mass"), read_tensor(path, f"{name}.tail_pmax")
    return KeptIds(ids=read_tensor(path, f"{name}.topk_ids"), counts=read_tensor(path, f"{name}.topk_counts"),
                   spread=tail_spread(mass, pmax))


def tail_spread(mass: np.ndarray, pmax: np.ndarray) -> np.ndarray:
    """How many tail ids the tail's mass could fill at its largest probability (0 where there is no tail)."""
    mass, pmax = np.asarray(mass, dtype=np.float64), np.asarray(pmax, dtype=np.float64)
    return np.divide(mass, pmax, out=np.zeros_like(mass), where=pmax > 0)
