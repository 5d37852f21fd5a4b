"""The bundle's tokenizer through pytorch_tokenizers' C++ classes: the same code ExecuTorch's runner
uses on the device, so token ids here are the ids there."""

from __future__ import annotations

from pathlib import Path

from llamaport.runtime_tests.device.native_logs import native_stderr_quiet


class TokenizerLoadError(ValueError):
    def __init__(self, path: Path, reasons: list[str]):
        super().__init__(f"{path}: no pytorch_tokenizers class loads it ({'; '.join(reasons)})")
        self.reasons = reasons


def load_tokenizer(path: Path):
    with native_stderr_quiet():  # the import itself logs
        import pytorch_tokenizers as pt

    # A bundle names its tokenizer tokenizer.json (Hugging Face) or tokenizer.model (any binary kind,
    # told apart by content, as ExecuTorch's runner does).
    candidates = ([pt.CppHFTokenizer] if Path(path).suffix == ".json"
                  else [pt.CppSPTokenizer, pt.CppTiktoken, pt.CppLlama2cTokenizer])
    errors = []
    for cls in candidates:
        tok = cls()
        try:
            with native_stderr_quiet():
                tok.load(str(path))
            if tok.is_loaded():
                return tok
        except Exception as e:  # each class raises when the file is another format
            errors.append(f"{cls.__name__}: {e}")
    raise TokenizerLoadError(path, errors)


def encode(tok, text: str, bos: bool) -> list[int]:
    return list(tok.encode(text, 1 if bos else 0, 0))
