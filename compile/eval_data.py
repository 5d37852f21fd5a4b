"""What the accuracy gate scores: a teacher-forced window of eval text and a few greedy prompts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llamaport_errors import ConfigError

DEFAULT_EVAL_TEXT = Path(__file__).parent / "default_model" / "eval.txt"
EVAL_TOKENS = 256
PROMPTS, PROMPT_TOKENS, GREEDY_TOKENS = 3, 12, 64


@dataclass(frozen=True)
class EvalSet:
    ids: list[int]  # BOS + eval text, teacher-forced
    prompts: list[list[int]]  # BOS + the start of a line, continued greedily
    greedy_tokens: int
    source: str


def build_eval_set(tok, text_path: Path | None, context_len: int) -> EvalSet:
    from runtime_tests.tokenizer import encode

    path = Path(text_path) if text_path else DEFAULT_EVAL_TEXT
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read eval text ({e})") from e
    if not lines:
        raise ConfigError(f"{path}: eval text is empty")
    ids = encode(tok, " ".join(lines), bos=True)[: min(EVAL_TOKENS, context_len)]
    greedy = min(GREEDY_TOKENS, context_len - PROMPT_TOKENS - 1)
    prompts = [encode(tok, ln, bos=True)[:PROMPT_TOKENS] for ln in lines[-PROMPTS:]]
    if len(ids) < 16 or greedy < 8:
        raise ConfigError(f"{path}: eval text or context ({context_len}) too short to measure accuracy")
    return EvalSet(ids, prompts, greedy, str(path))
