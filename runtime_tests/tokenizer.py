"""The bundle's tokenizer through pytorch_tokenizers' C++ classes: the same code ExecuTorch's runner
uses on the device, so token ids here are the ids there."""

from __future__ import annotations

from pathlib import Path


def load_tokenizer(path: Path):
    import pytorch_tokenizers as pt

    candidates = {"tokenizer.json": [pt.CppHFTokenizer], "tokenizer.bin": [pt.CppLlama2cTokenizer],
                  "tokenizer.model": [pt.CppSPTokenizer, pt.CppTiktoken]}[Path(path).name]
    errors = []
    for cls in candidates:
        tok = cls()
        try:
            tok.load(str(path))
            if tok.is_loaded():
                return tok
        except Exception as e:  # each class raises when the file is another format
            errors.append(f"{cls.__name__}: {e}")
    raise ValueError(f"{path}: no pytorch_tokenizers class loads it ({'; '.join(errors)})")


def encode(tok, text: str, bos: bool) -> list[int]:
    return list(tok.encode(text, 1 if bos else 0, 0))
