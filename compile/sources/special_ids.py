"""BOS/EOS ids for sources whose config does not carry them (Meta folders, llama2.c): from the
tokenizer itself, by the conventions of the code that made those tokenizers."""

from __future__ import annotations

import json

from llamaport.compile.checkpoint import TokenizerFile
from llamaport.errors import ConfigError

LLAMA2C_BOS, LLAMA2C_EOS = 1, 2  # hard-coded in llama2.c's run.c and Llama 2's sentencepiece model
LLAMA3_EOS_OFFSETS = (1, 9)  # <|end_of_text|>, <|eot_id|> after the 128000 base tokens


def special_ids(tok: TokenizerFile) -> tuple[int, list[int]]:
    if tok.kind == "llama2c":
        return LLAMA2C_BOS, [LLAMA2C_EOS]
    if tok.kind == "sentencepiece":
        import sentencepiece
        sp = sentencepiece.SentencePieceProcessor(model_file=str(tok.path))
        return sp.bos_id(), [sp.eos_id()]
    if tok.kind == "tiktoken":
        base = sum(1 for line in tok.path.open("rb") if line.strip())
        return base, [base + o for o in LLAMA3_EOS_OFFSETS]
    return _from_hf_json(tok)


def _from_hf_json(tok: TokenizerFile) -> tuple[int, list[int]]:
    config_path = tok.path.parent / "tokenizer_config.json"
    if not config_path.is_file():
        raise ConfigError(f"{tok.path.parent}: tokenizer.json without tokenizer_config.json; "
                          "cannot tell the BOS/EOS tokens")
    from llamaport.compile.sources.hf_folder import read_json

    config = read_json(config_path)
    added = read_json(tok.path).get("added_tokens", [])
    if not isinstance(added, list) or not all(isinstance(t, dict) and "content" in t and "id" in t for t in added):
        raise ConfigError(f"{tok.path}: \"added_tokens\" must be a list of objects with \"content\" and \"id\"")
    vocab = {t["content"]: t["id"] for t in added}
    ids = []
    for key in ("bos_token", "eos_token"):
        token = config.get(key)
        token = token.get("content") if isinstance(token, dict) else token
        if token not in vocab:
            raise ConfigError(f"{config_path}: {key} {token!r} is not a special token of {tok.path}")
        ids.append(vocab[token])
    return ids[0], [ids[1]]
