"""Meta-format tokenizers as a Hugging Face tokenizer.json, for ONNX bundles (onnxruntime-genai and
optimum read no other kind), by transformers' own converters: sentencepiece (Llama 2, TinyLlama) through
LlamaTokenizerFast's conversion from the slow tokenizer, tiktoken (Llama 3.x) through TikTokenConverter
with the regex and the 256 special tokens ExecuTorch's tiktoken tokenizer appends after the base ranks
(pytorch_tokenizers.constants, so both number them alike). A conversion is kept only when it is proven:
the eval text and every prompt encode to the same ids through the converted file and through the
original, each read by the runner's C++ tokenizer (pytorch_tokenizers), as the build's ids are."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from llamaport.compile.checkpoint import LlamaCheckpoint, TokenizerFile
from llamaport.errors import ConfigError

CONVERTIBLE = ("sentencepiece", "tiktoken")


@dataclasses.dataclass(frozen=True)
class Conversion:
    source: TokenizerFile
    converter: str
    texts: int  # how many texts encoded to the same ids both ways
    ids: int  # how many ids they were, together

    def describe(self) -> str:
        return (f"{self.source.path.name} ({self.source.kind}) converted to tokenizer.json by transformers' "
                f"{self.converter}; the same ids both ways on {self.texts} texts ({self.ids} ids)")


def convert_for_onnx(ckpt: LlamaCheckpoint, folder: Path, texts: list[str]) -> tuple[LlamaCheckpoint, Conversion]:
    """The checkpoint with its tokenizer as tokenizer.json (+ tokenizer_config.json) written into `folder`,
    and what was proven of it."""
    tok = ckpt.tokenizer
    if tok.kind == "sentencepiece":
        fast, converter = _from_sentencepiece(tok.path), "LlamaConverter (LlamaTokenizerFast from_slow)"
    elif tok.kind == "tiktoken":
        fast, converter = _from_tiktoken(tok.path, ckpt.bos_id, ckpt.eos_ids), "TikTokenConverter"
    else:
        raise ConfigError(f"{tok.path}: a {tok.kind} tokenizer cannot be converted to tokenizer.json; "
                          "put a tokenizer.json beside the weights")
    fast.save_pretrained(str(folder))
    _loadable_without_the_original(folder / "tokenizer_config.json")
    for extra in ("special_tokens_map.json", "chat_template.jinja", "tokenizer.model"):  # what the runtimes read stays
        (folder / extra).unlink(missing_ok=True)
    converted = TokenizerFile("hf_json", folder / "tokenizer.json")
    ids = _same_ids(tok, converted, texts)
    return dataclasses.replace(ckpt, tokenizer=converted), Conversion(tok, converter, len(texts), ids)


def _loadable_without_the_original(config_path: Path) -> None:
    """The saved config asks for add_prefix_space, which makes transformers rebuild the tokenizer from the
    sentencepiece file (the builder's AutoTokenizer then fails without it); tokenizer.json already holds it.
    transformers 4.57.6 behaviour: can go when LlamaTokenizerFast stops forcing from_slow for that key."""
    import json

    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.pop("add_prefix_space", None)
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _from_sentencepiece(path: Path):
    from transformers import LlamaTokenizerFast

    # legacy=True with add_prefix_space: the Prepend + Replace normalizer of Meta's own Llama 2
    # tokenizer.json, which pytorch_tokenizers reads (it has no Metaspace pre-tokenizer, legacy=False's form);
    # without add_prefix_space the converter leaves sentencepiece's dummy prefix out (other first ids).
    # legacy=True can go when pytorch_tokenizers (1.5.0 here) reads the Metaspace pre-tokenizer.
    return LlamaTokenizerFast(vocab_file=str(path), from_slow=True, legacy=True, add_prefix_space=True,
                              add_bos_token=True, add_eos_token=False)


def _from_tiktoken(path: Path, bos: int, eos: list[int]):
    from pytorch_tokenizers.constants import CL100K_PAT_STR, LLAMA_SPECIAL_TOKENS
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    tokenizer = TikTokenConverter(vocab_file=str(path), pattern=CL100K_PAT_STR,
                                  additional_special_tokens=LLAMA_SPECIAL_TOKENS).converted()
    names = {i: t for t, i in tokenizer.get_vocab(with_added_tokens=True).items()}
    # BOS as Meta's Llama 3 tokenizer.json adds it (TemplateProcessing), which is where readers take it from
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{names[bos]} $A", pair=f"{names[bos]} $A {names[bos]} $B", special_tokens=[(names[bos], bos)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=names[bos], eos_token=names[eos[0]])


def _same_ids(original: TokenizerFile, converted: TokenizerFile, texts: list[str]) -> int:
    """The ids of every text through the original (the runner's C++ tokenizer), which must equal both the
    converted file's through the same C++ reader and through Hugging Face tokenizers (what apps on optimum
    use); returns how many ids were compared."""
    from tokenizers import Tokenizer

    from llamaport.runtime_tests.tokenizer import TokenizerLoadError, encode, load_tokenizer

    before = load_tokenizer(original.path)
    try:
        after = load_tokenizer(converted.path)
    except TokenizerLoadError as e:
        raise ConfigError(f"{original.path}: its tokenizer.json conversion is not readable by ExecuTorch's tokenizer "
                          f"({'; '.join(e.reasons)}); put the model's own tokenizer.json beside the weights") from e
    hf = Tokenizer.from_file(str(converted.path))
    total = 0
    for text in texts:
        want = encode(before, text, bos=True)
        for reader, got in (("pytorch_tokenizers", encode(after, text, bos=True)), ("tokenizers", hf.encode(text).ids)):
            if got != want:
                first = next((i for i, (x, y) in enumerate(zip(want, got)) if x != y), min(len(want), len(got)))
                raise ConfigError(f"{original.path}: its tokenizer.json conversion encodes the eval text differently "
                                  f"through {reader} (at id {first}: {want[first:first + 3]} vs {got[first:first + 3]}); "
                                  "put the model's own tokenizer.json beside the weights")
        total += len(want)
    return total
