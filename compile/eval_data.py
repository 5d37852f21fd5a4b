"""What accuracy and latency are measured on: a teacher-forced window of eval text, a few greedy
prompts (kept as text too, for runners that take text), and the prompt latency is timed on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llamaport.errors import ConfigError

DEFAULT_EVAL_TEXT = Path(__file__).parent / "default_model" / "eval.txt"
EVAL_TOKENS = 256
PROMPTS, PROMPT_TOKENS, GREEDY_TOKENS = 3, 12, 64
LATENCY_PROMPT_TOKENS = 32


@dataclass(frozen=True)
class EvalSet:
    ids: list[int]  # BOS + eval text, teacher-forced
    prompt_texts: list[str]
    prompts: list[list[int]]  # BOS + the prompt text's ids
    greedy_tokens: int
    latency_prompt_text: str
    latency_prompt: list[int]
    source: str
    window: int | None = None  # fixed-length programs: teacher-forced ids are read in windows of this length

    def windows(self) -> list[list[int]]:
        """The teacher-forced ids as the program reads them: whole, or window by window."""
        if self.window is None:
            return [self.ids]
        return [self.ids[i: i + self.window] for i in range(0, len(self.ids), self.window)]


def _word_prefix(tok, text: str, max_tokens: int) -> tuple[str, list[int]]:
    """The longest whole-word prefix of `text` whose ids (BOS included) fit in `max_tokens`, so the
    text and the ids stay the same prompt for runners that tokenize themselves."""
    from llamaport.runtime_tests.tokenizer import encode

    words, best = text.split(), ("", [])
    for n in range(1, len(words) + 1):
        candidate = " ".join(words[:n])
        ids = encode(tok, candidate, bos=True)
        if len(ids) > max_tokens:
            break
        best = (candidate, ids)
    return best


def _lines(path: Path) -> list[str]:
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read eval text ({e})") from e
    if not lines:
        raise ConfigError(f"{path}: eval text is empty")
    return lines


def eval_texts(path: Path) -> list[str]:
    """Every text the eval set encodes: the whole text as one line, then each line (the prompts are lines)."""
    lines = _lines(path)
    return [" ".join(lines), *lines]


def build_eval_set(tok, text_path: Path | None, context_len: int, windowed: bool = False) -> EvalSet:
    from llamaport.runtime_tests.tokenizer import encode

    path = Path(text_path) if text_path else DEFAULT_EVAL_TEXT
    lines = _lines(path)
    text = " ".join(lines)
    # A windowed program reads any length in windows of its context; others read at most their context.
    ids = encode(tok, text, bos=True)[: EVAL_TOKENS if windowed else min(EVAL_TOKENS, context_len)]
    greedy = min(GREEDY_TOKENS, context_len - PROMPT_TOKENS - 1)
    prompts = [_word_prefix(tok, ln, PROMPT_TOKENS) for ln in lines[-PROMPTS:]]
    latency_text, latency_ids = _word_prefix(tok, text, min(LATENCY_PROMPT_TOKENS, context_len // 2))
    if len(ids) < 16 or greedy < 8 or any(len(p[1]) < 2 for p in prompts) or len(latency_ids) < 2:
        raise ConfigError(f"{path}: eval text or context ({context_len}) too short to measure accuracy")
    return EvalSet(ids, [p[0] for p in prompts], [p[1] for p in prompts], greedy, latency_text, latency_ids, str(path),
                   window=context_len if windowed else None)
