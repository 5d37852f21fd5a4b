"""ExecuTorch's Vulkan backend (phone GPUs) through ExecuTorch's own LLM export steps: LlmConfig with
backend.vulkan, its Llama model, SDPA and KV-cache source transforms, dynamic shapes (parallel prefill),
our torchao scheme as a source transform (8da4w is export_llama's own Int8DynamicActivationIntxWeightConfig
with HQQ scales, see quantize.torchao_map), then export_to_edge and VulkanPartitioner, as export_llama's
`_to_edge_and_lower_llama` does for Vulkan. The quantized reference is the XNNPACK path's torchao eager model
(golden_build.quantized_eager_outputs): the same module, weights and quantization.

Vocabulary padding. ExecuTorch 1.5.1's Vulkan fusion of a 4-bit linear (backends/vulkan/patterns/
quantized_linear.py, make_linear_q4gsw_op / make_linear_dq8ca_q4gsw_op) transposes the weight scales to
[groups, out_features] and pads out_features up to a multiple of 4 (utils.align_width_and_update_state_dict),
while the weight keeps its rows; the op's shape function then fails ("shape '[498, 4, 1]' is invalid for input
of size 2000") for any layer whose out_features is not a multiple of 4 (vocabularies 500 and 512 lower as they
are: a multiple of 32 is not needed). Body linears have the model's dims as widths (a model where one is not a
multiple of 4 is refused in one line); the output layer's width is the vocabulary. So for 4-bit schemes the
output layer gets zero rows up to the next multiple of 4 and the model slices the logits back to the
vocabulary inside the program (the slice is delegated too): each logit row is its own dot product, so the real
rows are unchanged; `export` checks that on the layer and the manifest's lowering notes record it. fp32 lowers
any width. Can go when ExecuTorch's Vulkan 4-bit linear pads the weight with its scales (a vocabulary-498
8da4w model lowers unpadded: tests/compile/test_build_gpu_npu_backends.py)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from llamaport.compile.checkpoint import LlamaCheckpoint
from llamaport.compile.exporters.executorch import delegation_summary, other_backend_config
from llamaport.compile.exporters.exported import Exported
from llamaport.errors import ConfigError
from llamaport.quantize.schemes import QuantScheme
from llamaport.quantize.torchao_map import OUTPUT_LAYER, apply_scheme_, describe
from llamaport.runtime_tests.manifest import Lowering

OUT_FEATURES_MULTIPLE = 4  # what ExecuTorch 1.5.1's Vulkan 4-bit linear needs of a layer's output width
PADDING_TOLERANCE = 1e-6


class VocabPaddedLinear(torch.nn.Linear):
    """The output layer with zero rows appended, returning only the first `vocab` logits. Still an
    nn.Linear named `output`, so the scheme quantizes it as the output layer (per row: the zero rows change
    no real row's scales)."""

    def __init__(self, layer: torch.nn.Linear, multiple: int):
        vocab, dim = layer.weight.shape
        padded = -(-vocab // multiple) * multiple
        super().__init__(dim, padded, bias=False, device=layer.weight.device, dtype=layer.weight.dtype)
        with torch.no_grad():
            self.weight.zero_()
            self.weight[:vocab] = layer.weight
        self.vocab = vocab

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)[..., : self.vocab]


def needs_padding(scheme: QuantScheme, vocab: int) -> bool:
    return scheme.output_quant.kind in ("8da4w", "4w") and vocab % OUT_FEATURES_MULTIPLE != 0


def pad_output_layer_(model: torch.nn.Module, multiple: int = OUT_FEATURES_MULTIPLE) -> str:
    """Replace the output layer by its padded form, after checking on random hidden states that its logits
    are the unpadded layer's (to 1e-6); return the note the manifest keeps."""
    layer = getattr(model, OUTPUT_LAYER)
    padded = VocabPaddedLinear(layer, multiple)
    hidden = torch.randn(64, layer.in_features, generator=torch.Generator().manual_seed(0), dtype=layer.weight.dtype)
    with torch.no_grad():
        difference = float((padded(hidden) - layer(hidden)).abs().max())
    if difference > PADDING_TOLERANCE:
        raise ConfigError(f"padding the output layer changed its logits (max |difference| {difference:.3g}); "
                          "this vocabulary cannot be built for Vulkan")
    setattr(model, OUTPUT_LAYER, padded)
    return (f"output layer padded from {padded.vocab} to {padded.out_features} rows with zero rows and its logits "
            f"sliced back to {padded.vocab} in the program (ExecuTorch's Vulkan 4-bit linear needs a multiple of "
            f"{multiple} output features); padded vs unpadded layer on 64 random hidden states: max |difference| "
            f"{difference:.3g}")


def _check_body_widths(cfg: dict, scheme: QuantScheme) -> None:
    if scheme.linear.kind not in ("8da4w", "4w"):
        return
    for width in (cfg["hidden_size"], cfg["num_key_value_heads"] * cfg["head_dim"], cfg["intermediate_size"]):
        if width % OUT_FEATURES_MULTIPLE:
            raise ConfigError(f"a linear layer of this model has {width} output features; ExecuTorch's Vulkan 4-bit "
                              f"linear needs a multiple of {OUT_FEATURES_MULTIPLE}: use an fp32 Vulkan recipe")


def export(ckpt: LlamaCheckpoint, scheme: QuantScheme, max_seq_len: int, backends: tuple[str, ...],
           work: Path, inputs=None) -> Exported:
    from executorch.examples.models.llama import export_llama_lib as et
    from executorch.extension.llm.export.partitioner_lib import get_vulkan_partitioner

    _check_body_widths(ckpt.config, scheme)
    notes: list[str] = []

    def transform(model):
        if needs_padding(scheme, ckpt.config["vocab_size"]):
            notes.append(pad_output_layer_(model))
        return apply_scheme_(model, scheme)

    with other_backend_config(ckpt, work, max_seq_len) as config:
        config.backend.vulkan.enabled = True
        et._validate_args(config)
        manager = et._prepare_for_llama_export(config)  # load + ExecuTorch's SDPA / KV-cache transforms
        with torch.no_grad():
            manager = manager.source_transform([transform])
        exported = manager.export()
        exported.run_canonical_optimizations()
        partitioner = get_vulkan_partitioner(config.model.dtype_override.value, config.model.enable_dynamic_shape)
        lowered = exported.export_to_edge().to_backend([partitioner])
        delegation = delegation_summary(lowered.edge_manager.exported_program().graph_module, backends)
        program = lowered.to_executorch(passes=[])
        pte = work / "model.pte"
        program.save_to_pte(str(pte.resolve()))
        return Exported(files=(pte,), lowering=Lowering(quantization=describe(scheme), delegation=delegation,
                                                        notes=tuple(notes)))
