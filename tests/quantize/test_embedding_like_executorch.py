"""Our 4- and 8-bit embeddings are rounded as ExecuTorch's export_llama rounds them (`--embedding-quantize
B,G`: EmbeddingQuantHandler, HQQ scales): the same codes and scales on the bundled model's table. The whole
bundle's equality with export_llama's (bytes and logits) is shown by bench/executorch_recipe_parity.py."""

import pytest
import torch

from llamaport.compile.pipeline import DEFAULT_MODEL
from llamaport.quantize import EmbeddingQuant
from llamaport.quantize.torchao_map import embedding_config


@pytest.mark.parametrize("bits,group", [(4, 32), (4, 64), (8, 32)])
def test_embedding_codes_and_scales_equal_export_llamas(bits, group):
    from executorch.examples.models.llama.source_transformation.quantize import EmbeddingQuantHandler
    from safetensors.torch import load_file
    from torchao.quantization import IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerGroup

    table = load_file(DEFAULT_MODEL / "model.safetensors")["model.embed_tokens.weight"]

    def holder():
        m = torch.nn.Module()
        m.tok_embeddings = torch.nn.Embedding(*table.shape)
        m.tok_embeddings.weight = torch.nn.Parameter(table.clone(), requires_grad=False)
        return m

    ours = holder()
    quantize_(ours, embedding_config(EmbeddingQuant(bits, group)), filter_fn=lambda m, fqn: isinstance(m, torch.nn.Embedding))
    theirs = EmbeddingQuantHandler(holder(), bitwidth=bits, group_size=group, packed=False).create_quantized_state_dict()
    codes, scales = ours.tok_embeddings.weight.qdata, ours.tok_embeddings.weight.scale
    assert torch.equal(codes, theirs["tok_embeddings.weight"])
    assert torch.equal(scales.squeeze(-1), theirs["tok_embeddings.scales"])
    # and not what plain rounding gives: HQQ moved some scales (the check above would pass trivially otherwise)
    plain = holder()
    quantize_(plain, IntxWeightOnlyConfig(weight_dtype=getattr(torch, f"int{bits}"), granularity=PerGroup(group)),
              filter_fn=lambda m, fqn: isinstance(m, torch.nn.Embedding))
    assert not torch.equal(plain.tok_embeddings.weight.scale, scales)
