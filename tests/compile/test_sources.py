"""Every source format reads into the same normalized checkpoint, and the layout conversion is proven
against ExecuTorch's own Meta-layout Llama, including Llama 3.1 rope scaling and tied embeddings."""

import pytest
import torch

from llamaport.compile.layout import hf_to_meta, hf_to_meta_rope, meta_to_hf, meta_to_hf_rope
from llamaport.compile.reference import full_model
from llamaport.compile.sources import load_checkpoint
from llamaport.compile.exporters.executorch import meta_params


@pytest.mark.parametrize("fmt", ["meta", "llama2c-legacy", "llama2c-v1", "llama2c-pt"])
def test_every_format_reads_to_the_same_weights_and_config(fmt, sources, default_checkpoint):
    ckpt = load_checkpoint(sources[fmt])
    assert ckpt.source_format == fmt.split("-")[0]
    assert ckpt.state_dict.keys() == default_checkpoint.state_dict.keys()
    for name, w in default_checkpoint.state_dict.items():
        assert torch.equal(ckpt.state_dict[name], w), name
    for key in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "tie_word_embeddings"):
        assert ckpt.config[key] == default_checkpoint.config[key], key
    assert (ckpt.bos_id, ckpt.eos_ids) == (1, [2])


def test_hf_source_takes_ids_and_shapes_from_its_config(default_checkpoint):
    c = default_checkpoint.config
    assert (c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]) == (4, 2, 32)
    assert default_checkpoint.tokenizer.kind == "hf_json"
    assert default_checkpoint.state_dict["model.embed_tokens.weight"].dtype == torch.float32


def test_rope_permutation_round_trips():
    w = torch.randn(4 * 16, 32)
    assert torch.equal(meta_to_hf_rope(hf_to_meta_rope(w, 4), 4), w)
    assert not torch.equal(hf_to_meta_rope(w, 4), w)


def _executorch_meta_layout_logits(ckpt, ids):
    from executorch.examples.models.llama.llama_transformer import construct_transformer
    from executorch.examples.models.llama.model_args import ModelArgs

    params = meta_params(ckpt.config)
    args = ModelArgs(**params, max_seq_len=64, max_context_len=64)
    if params["use_scaled_rope"]:
        args.rope_scale_factor = params["rope_scale_factor"]
    model = construct_transformer(args)
    model.load_state_dict(hf_to_meta(ckpt.state_dict, ckpt.config), strict=False)
    with torch.no_grad():
        return model(torch.tensor([ids]))


@pytest.mark.parametrize("which", ["tiny_random_hf", "default"])
def test_executorch_meta_layout_equals_transformers(which, tiny_random_hf, default_checkpoint):
    """The proof that converted weights are the same model: ExecuTorch's Llama (interleaved RoPE,
    Meta names, its llama3 rope scaling) against transformers' LlamaForCausalLM, same logits."""
    ckpt = load_checkpoint(tiny_random_hf) if which == "tiny_random_hf" else default_checkpoint
    ids = list(range(1, 41))
    with torch.no_grad():
        expected = full_model(ckpt)(torch.tensor([ids])).logits[0, -1]
    got = _executorch_meta_layout_logits(ckpt, ids).reshape(-1)
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()


def test_tied_and_scaled_random_model_is_read_as_such(tiny_random_hf):
    ckpt = load_checkpoint(tiny_random_hf)
    assert ckpt.config["tie_word_embeddings"] and "lm_head.weight" not in ckpt.state_dict
    assert ckpt.config["rope_scaling"]["factor"] == 32.0
    assert meta_params(ckpt.config)["rope_scale_factor"] == 32
    meta = hf_to_meta(ckpt.state_dict, ckpt.config)
    assert meta["output.weight"] is meta["tok_embeddings.weight"]
    assert meta_to_hf(meta, ckpt.config).keys() == ckpt.state_dict.keys()
