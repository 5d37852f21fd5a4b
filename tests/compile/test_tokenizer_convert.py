"""Meta-format tokenizers (sentencepiece as Llama 2 ships it, tiktoken as Llama 3 does) reach ONNX bundles
as tokenizer.json, converted by transformers' converters and proven by the ids: Meta folders of both kinds
build onnxruntime-genai and Hugging Face ONNX bundles that generate the full model's greedy tokens."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from llamaport.compile.checkpoint import LlamaCheckpoint, TokenizerFile, check_state_dict, llama_config
from llamaport.compile.eval_data import DEFAULT_EVAL_TEXT, eval_texts
from llamaport.compile.sources.special_ids import special_ids
from llamaport.compile.tokenizer_convert import convert_for_onnx
from llamaport.errors import ConfigError
from llamaport.runtime_tests.tokenizer import encode, load_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from source_writers import write_meta_folder  # noqa: E402
from tokenizer_writers import write_sentencepiece_model, write_tiktoken_model  # noqa: E402

WRITERS = {"sentencepiece": write_sentencepiece_model, "tiktoken": write_tiktoken_model}


@pytest.fixture(scope="module")
def tokenizer_models(tmp_path_factory):
    out = {}
    for kind, write in WRITERS.items():
        out[kind] = write(tmp_path_factory.mktemp(kind))
    return out


@pytest.fixture(scope="module")
def meta_folders(tmp_path_factory, tokenizer_models):
    """A Llama 2-style Meta folder (sentencepiece, untied output, MHA) and a Llama 3.2-style one (tiktoken with
    its 256 special tokens after the ranks, tied embedding, GQA, scaled RoPE), random weights of their vocabularies."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folders = {}
    for kind, model in tokenizer_models.items():
        tok = TokenizerFile(kind, model)
        bos, eos = special_ids(tok)
        vocab = load_tokenizer(model).vocab_size()  # tiktoken: the ranks and the 256 special tokens after them
        llama3 = kind == "tiktoken"
        shape = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2 if llama3 else 4, max_position_embeddings=256, tie_word_embeddings=llama3,
                     rope_theta=500000.0 if llama3 else 10000.0, bos_token_id=bos, eos_token_id=eos,
                     initializer_range=0.1)  # peaked logits: greedy runs are not decided by float noise
        if llama3:
            shape["rope_scaling"] = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
        torch.manual_seed(1)
        model_sd = LlamaForCausalLM(LlamaConfig(**shape)).state_dict()
        cfg = llama_config(**{k: v for k, v in shape.items() if k != "initializer_range"})
        ckpt = LlamaCheckpoint(cfg, check_state_dict(cfg, model_sd, "random"), tok, "random")
        folders[kind] = write_meta_folder(ckpt, tmp_path_factory.mktemp(f"meta-{kind}") / "model")
    return folders


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_conversion_gives_the_original_ids_through_both_readers(kind, tokenizer_models, tmp_path):
    from tokenizers import Tokenizer

    tok = TokenizerFile(kind, tokenizer_models[kind])
    bos, eos = special_ids(tok)
    ckpt = LlamaCheckpoint({"bos_token_id": bos, "eos_token_id": eos}, {}, tok, "meta")
    converted, conversion = convert_for_onnx(ckpt, tmp_path, eval_texts(DEFAULT_EVAL_TEXT))
    assert converted.tokenizer == TokenizerFile("hf_json", tmp_path / "tokenizer.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    assert conversion.texts == len(eval_texts(DEFAULT_EVAL_TEXT)) and conversion.ids > 5000
    text = "Once upon a time, there was a little cat named Tom. It said: \"Hello!\" 123"
    want = encode(load_tokenizer(tok.path), text, bos=True)
    assert want[0] == bos and len(want) > 10
    assert encode(load_tokenizer(converted.tokenizer.path), text, bos=True) == want
    assert Tokenizer.from_file(str(converted.tokenizer.path)).encode(text).ids == want
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    names = {i: t for t, i in Tokenizer.from_file(str(converted.tokenizer.path)).get_vocab(with_added_tokens=True).items()}
    assert (config["bos_token"], config["eos_token"]) == (names[bos], names[eos[0]])


def test_a_conversion_that_changes_the_ids_is_refused(tokenizer_models, tmp_path, monkeypatch):
    """The proof can fail: a converter that drops sentencepiece's dummy prefix (transformers' default without
    add_prefix_space) encodes the first word to another id, and the build stops with one line."""
    import llamaport.compile.tokenizer_convert as convert
    from transformers import LlamaTokenizerFast

    monkeypatch.setattr(convert, "_from_sentencepiece", lambda path: LlamaTokenizerFast(
        vocab_file=str(path), from_slow=True, legacy=True, add_bos_token=True))
    tok = TokenizerFile("sentencepiece", tokenizer_models["sentencepiece"])
    ckpt = LlamaCheckpoint({"bos_token_id": 1, "eos_token_id": 2}, {}, tok, "meta")
    with pytest.raises(ConfigError, match=r"tokenizer.model: its tokenizer.json conversion encodes the eval text "
                                          r"differently through pytorch_tokenizers \(at id 1: "):
        convert_for_onnx(ckpt, tmp_path, eval_texts(DEFAULT_EVAL_TEXT))


def _check_meta_onnx_bundle(build, kind: str, tokenizer_model: Path) -> None:
    m = build.manifest
    assert m.source.format == "meta" and m.source.tokenizer_kind == kind
    assert m.source.tokenizer.path.endswith("tokenizer.model")
    assert "converted to tokenizer.json" in m.source.tokenizer_converted and "the same ids" in m.source.tokenizer_converted
    assert m.runtime.tokenizer == "model/tokenizer.json"
    assert not (build.bundle / "model" / "tokenizer.model").exists()
    # the golden ids are the original tokenizer's: what the model was trained with
    golden_prompts = build.golden.prompts
    original = load_tokenizer(tokenizer_model)
    assert [encode(original, t, bos=True) for t in build.golden.prompt_texts] == golden_prompts
    # fp32 bundle: the runtime's greedy tokens are the full model's, every one of them
    assert m.accuracy.greedy_identical and m.accuracy.vs_full.greedy_match_pct == 100.0
    assert m.accuracy.vs_full.kld_mean < 1e-6


def test_llama2_meta_folder_with_sentencepiece_builds_an_onnxruntime_genai_bundle(meta_folders, tokenizer_models, bundle):
    build = bundle(meta_folders["sentencepiece"], "ortgenai-cpu-fp32")
    assert build.manifest.accuracy.measured_by == "onnxruntime-genai"
    _check_meta_onnx_bundle(build, "sentencepiece", tokenizer_models["sentencepiece"])


@pytest.mark.slow  # the converter itself is proven in the default suite (test_conversion_gives_the_original_ids...)
def test_llama3_meta_folder_with_tiktoken_builds_an_onnxruntime_genai_bundle(meta_folders, tokenizer_models, bundle):
    build = bundle(meta_folders["tiktoken"], "ortgenai-cpu-fp32")
    assert build.manifest.accuracy.measured_by == "onnxruntime-genai"
    _check_meta_onnx_bundle(build, "tiktoken", tokenizer_models["tiktoken"])


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_meta_folders_build_hugging_face_onnx_bundles(kind, meta_folders, tokenizer_models, bundle):
    build = bundle(meta_folders[kind], "onnx-cpu-fp32")
    assert build.manifest.accuracy.measured_by == "onnxruntime"
    _check_meta_onnx_bundle(build, kind, tokenizer_models[kind])
