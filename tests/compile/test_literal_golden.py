"""A committed literal golden, llama2.c style: the bundled model's greedy text for a few prompts, which
eager transformers, the fp32 .pte (ExecuTorch's runtime) and the fp32 onnxruntime-genai bundle must each
reproduce exactly. A bug in a shared loader or tokenizer moves every computed reference together; it cannot
move this file. Regenerate only for a deliberate change of the bundled model:
    python -m tests.compile.test_literal_golden --write
"""

import json
import sys
from pathlib import Path

from llamaport.compile.pipeline import DEFAULT_MODEL

EXPECTED = Path(__file__).with_name("expected_greedy.json")
PROMPTS = ("Once upon a time", "Tom and his dog went to the park.", "The little girl was sad because")
NEW_TOKENS = 32


def _until_eos(tokens: list[int], eos: int = 2) -> list[int]:
    return tokens[: tokens.index(eos)] if eos in tokens else tokens


def _decode(tokens: list[int]) -> str:
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(DEFAULT_MODEL / "tokenizer.json")).decode(_until_eos(tokens))


def _ids(prompt: str) -> list[int]:
    from llamaport.runtime_tests.tokenizer import encode, load_tokenizer
    return encode(load_tokenizer(DEFAULT_MODEL / "tokenizer.json"), prompt, bos=True)


def eager_texts() -> dict[str, str]:
    from llamaport.compile.reference import full_model, greedy_tokens
    from llamaport.compile.sources import load_checkpoint

    model = full_model(load_checkpoint(DEFAULT_MODEL))
    return {p: _decode(greedy_tokens(model, _ids(p), NEW_TOKENS)) for p in PROMPTS}


def expected() -> dict[str, str]:
    return json.loads(EXPECTED.read_text())["greedy"]


def test_eager_transformers_reproduces_the_literal_golden():
    assert eager_texts() == expected()


def test_the_fp32_pte_reproduces_the_literal_golden(bundle):
    from llamaport.runtime_tests.device.timing import greedy
    from llamaport.runtime_tests.device.drivers.executorch_runtime import ExecuTorchModel

    model = ExecuTorchModel(bundle(DEFAULT_MODEL, "et-xnnpack-fp32").artifact)
    assert {p: _decode(greedy(model, _ids(p), NEW_TOKENS)) for p in PROMPTS} == expected()


def test_the_fp32_onnxruntime_genai_bundle_reproduces_the_literal_golden(bundle):
    """Driven as an app drives onnxruntime-genai: its own tokenizer (told to add BOS), search to EOS."""
    import onnxruntime_genai as og

    model = og.Model(str(bundle(DEFAULT_MODEL, "ortgenai-cpu-fp32").bundle / "model"))
    tokenizer = og.Tokenizer(model)
    tokenizer.update_options(add_special_tokens="true")
    texts = {}
    for prompt in PROMPTS:
        ids = list(tokenizer.encode(prompt))
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + NEW_TOKENS, do_sample=False)
        generator = og.Generator(model, params)
        generator.append_tokens(ids)
        tokens = []
        while not generator.is_done():
            generator.generate_next_token()
            tokens.append(int(generator.get_next_tokens()[0]))
        texts[prompt] = tokenizer.decode(_until_eos(tokens))
    assert texts == expected()


if __name__ == "__main__" and "--write" in sys.argv:
    EXPECTED.write_text(json.dumps({"model": "compile/default_model", "new_tokens": NEW_TOKENS,
                                    "greedy": eager_texts()}, indent=2) + "\n")
