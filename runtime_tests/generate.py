"""`llamaport generate`: greedy text from a bundle with its own runtime, streamed as it is produced, BOS
first and stopping at the model's EOS ids, the way an app drives the runtime:

  executorch-pte     the .pte through ExecuTorch's runtime (the program the LLM runner executes), ids
                     from the bundle's tokenizer through pytorch_tokenizers, as the runner encodes them;
  onnxruntime-genai  og.Model / og.Tokenizer / og.Generator on model/, the tokenizer told to add BOS;
  huggingface-onnx   onnxruntime on model/model.onnx, Hugging Face's tokenizer.

Text is streamed by incremental detokenization (a byte-level piece that is half a character waits for
the rest), so any tokenizer streams cleanly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable


class _TextStream:
    """Ids in, new text out: decode the whole continuation and emit what grew, holding back a trailing
    partial character (U+FFFD) until the next piece completes it."""

    def __init__(self, decode: Callable[[list[int]], str]):
        self.decode, self.ids, self.sent = decode, [], ""

    def add(self, token: int) -> str:
        self.ids.append(token)
        text = self.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""
        new, self.sent = text[len(self.sent):], text
        return new


def _step_loop(model, prompt_ids: list[int], eos: set[int], max_new: int, stream: _TextStream, on_text) -> str:
    token = int(model.prefill(prompt_ids).argmax())
    for i in range(max_new):
        if token in eos:
            break
        on_text(stream.add(token))
        if i + 1 < max_new:
            token = int(model.decode(token, len(prompt_ids) + i).argmax())
    return stream.sent


def _executorch(bundle: Path, manifest, prompt: str, max_new: int, on_text) -> str:
    from llamaport.runtime_tests.device_job import load_model
    from llamaport.runtime_tests.tokenizer import encode, load_tokenizer

    tok_path = bundle / manifest.runtime.tokenizer
    tok = load_tokenizer(tok_path)
    ids = encode(tok, prompt, bos=True)
    model = load_model("executorch-runtime", bundle, manifest.runtime, manifest.model)
    stream = _TextStream(_whole_decoder(tok_path) if tok_path.suffix == ".json" else lambda ids: _decode_pieces(tok, ids))
    return _step_loop(model, ids, set(manifest.model.eos_ids), min(max_new, model.max_context_len - len(ids)), stream, on_text)


def _whole_decoder(tokenizer_json: Path) -> Callable[[list[int]], str]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    return lambda ids: tok.decode(ids, skip_special_tokens=True)


def _decode_pieces(tok, ids: list[int]) -> str:
    """pytorch_tokenizers decodes one token at a time; a piece that is not whole UTF-8 shows as U+FFFD."""
    pieces = []
    for token in ids:
        try:
            pieces.append(tok.decode(token, True))
        except UnicodeDecodeError:
            pieces.append("\ufffd")
    return "".join(pieces)


def _huggingface_onnx(bundle: Path, manifest, prompt: str, max_new: int, on_text) -> str:
    from tokenizers import Tokenizer

    from llamaport.runtime_tests.device_job import load_model

    tok = Tokenizer.from_file(str(bundle / manifest.runtime.tokenizer))
    decode = _whole_decoder(bundle / manifest.runtime.tokenizer)
    ids = tok.encode(prompt, add_special_tokens=True).ids
    if not ids or ids[0] != manifest.model.bos_id:
        ids = [manifest.model.bos_id, *ids]
    model = load_model("onnxruntime", bundle, manifest.runtime, manifest.model)
    stream = _TextStream(decode)
    return _step_loop(model, ids, set(manifest.model.eos_ids), min(max_new, manifest.model.context_len - len(ids)),
                      stream, on_text)


def _onnxruntime_genai(bundle: Path, manifest, prompt: str, max_new: int, on_text) -> str:
    import onnxruntime_genai as og

    model = og.Model(str((bundle / manifest.runtime.model).parent))
    tok = og.Tokenizer(model)
    tok.update_options(add_special_tokens="true")  # og 0.15.2 creates tokenizers without BOS; see RuntimeEntry.bos
    ids = list(tok.encode(prompt))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=min(len(ids) + max_new, manifest.model.context_len), do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    stream, text = tok.create_stream(), []
    while not generator.is_done():  # stops at genai_config's EOS ids, or max_length
        generator.generate_next_token()
        token = int(generator.get_next_tokens()[0])
        if token in manifest.model.eos_ids:
            break
        piece = stream.decode(token)
        text.append(piece)
        on_text(piece)
    return "".join(text)


LAYOUTS = {"executorch-pte": _executorch, "onnxruntime-genai": _onnxruntime_genai, "huggingface-onnx": _huggingface_onnx}


def generate(bundle: Path, manifest, prompt: str, max_new_tokens: int, on_text: Callable[[str], None]) -> str:
    return LAYOUTS[manifest.runtime.layout](Path(bundle), manifest, prompt, max_new_tokens, on_text)
