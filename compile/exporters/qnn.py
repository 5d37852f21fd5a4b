"""ExecuTorch's Qualcomm QNN backend (Hexagon NPU): calibrated static int8 (8a8w) or 16-bit-activation
(16a8w) graphs through ExecuTorch's own LLM export steps for QNN (LlmConfig with backend.qnn: its simple KV
cache, flex SDPA, causal-mask and linear-to-conv2d transforms, static shapes), QnnQuantizer calibrated on
the build's calibration windows, then export_llama's own QNN lowering (`_to_edge_and_lower_llama`: its QNN
passes and QnnPartitioner for the SoC).

Lowering needs Qualcomm's AI Runtime SDK on the build host. ExecuTorch 1.5.1 downloads libc++ and the SDK
from the network when QNN_SDK_ROOT is unset (backends/qualcomm/utils/qnn_sdk_setup.py), so llamaport checks
for the SDK first (`check_sdk`, also meant for the build's plan stage) and imports nothing of
executorch.backends.qualcomm until it is there.

Untested on this project's build hosts (they have no SDK): written against executorch 1.5.1's export_llama
QNN branch; only the refusal without the SDK is tested."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from llamaport.errors import ConfigError, StageError

if TYPE_CHECKING:  # `check_sdk` runs in the build's plan stage, which imports no torch
    import torch

    from llamaport.compile.checkpoint import LlamaCheckpoint
    from llamaport.compile.exporters.exported import Exported
    from llamaport.quantize.schemes import QuantScheme

SDK_VERSION_HINT = "2.37"  # what executorch 1.5.1's downloader fetches
HOST_LIBRARIES = Path("lib") / "x86_64-linux-clang"
HTP_LIBRARY = "libQnnHtp.so"  # what ExecuTorch's QNN lowering loads on the host
SOC_MODEL = "SM8650"  # export_llama's default SoC (Snapdragon 8 Gen 3)


def check_sdk() -> Path:
    """The QNN SDK folder, or one ConfigError line naming what is missing: nothing is imported or downloaded."""
    root = os.environ.get("QNN_SDK_ROOT", "")
    fix = (f"install Qualcomm's AI Runtime (QNN) SDK, e.g. {SDK_VERSION_HINT}, and set QNN_SDK_ROOT to its folder "
           f"(the one holding {HOST_LIBRARIES / HTP_LIBRARY})")
    if not root:
        raise ConfigError(f"QNN_SDK_ROOT is not set: the QNN backend is lowered by Qualcomm's SDK; {fix}")
    if not (Path(root) / HOST_LIBRARIES / HTP_LIBRARY).is_file():
        raise ConfigError(f"QNN_SDK_ROOT={root} has no {HOST_LIBRARIES / HTP_LIBRARY}; {fix}")
    return Path(root)


def _load_host_libraries(root: Path) -> None:
    """What ExecuTorch's own SDK setup does: load the SDK's host libraries globally, so its QNN manager finds
    them without LD_LIBRARY_PATH."""
    import ctypes

    for name in ("libQnnSystem.so", HTP_LIBRARY):
        if (root / HOST_LIBRARIES / name).is_file():
            ctypes.CDLL(str(root / HOST_LIBRARIES / name), mode=ctypes.RTLD_GLOBAL)


def _quantizer(scheme: QuantScheme):
    from executorch.backends.qualcomm.quantizer.quantizer import QnnQuantizer, QuantDtype
    from torchao.quantization.pt2e import MinMaxObserver

    dtype = {"8a8w": QuantDtype.use_8a8w, "16a8w": QuantDtype.use_16a8w}[scheme.linear.kind]
    quantizer = QnnQuantizer()
    quantizer.set_default_quant_config(dtype, is_conv_per_channel=True, is_linear_per_channel=True,
                                       act_observer=MinMaxObserver)
    return quantizer, dtype


def _decode(module, tokens: list[int], start: int = 0) -> torch.Tensor:
    """Feed tokens one per call, as the static-shape program reads them; [len(tokens), vocab] logits."""
    import torch

    out = [module(torch.tensor([[t]]), {"input_pos": torch.tensor([start + i])})
           for i, t in enumerate(tokens)]
    return torch.cat([o[0] if isinstance(o, tuple) else o for o in out]).reshape(len(tokens), -1).float()


def _calibrated_outputs(module, eval_set) -> tuple[torch.Tensor, list[list[int]]]:
    """The calibrated graph (fake-quantized) on the eval set: the quantized reference."""
    import torch

    logits = torch.cat([_decode(module, w) for w in eval_set.windows()])
    runs = []
    for prompt in eval_set.prompts:
        last, seq = _decode(module, prompt)[-1], []
        for _ in range(eval_set.greedy_tokens):
            seq.append(int(last.argmax()))
            last = _decode(module, [seq[-1]], len(prompt) + len(seq) - 1)[-1]
        runs.append(seq)
    return logits, runs


def export(ckpt: LlamaCheckpoint, scheme: QuantScheme, max_seq_len: int, backends: tuple[str, ...],
           work: Path, inputs=None) -> Exported:
    root = check_sdk()  # before anything from executorch.backends.qualcomm is imported
    if inputs is None or inputs.calibration is None:
        raise ConfigError(f"scheme {scheme.id} is calibrated: the QNN export needs the build's calibration windows")
    _load_host_libraries(root)
    import json

    import torch
    from executorch.examples.models.llama import export_llama_lib as et
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from llamaport.compile.exporters.executorch import delegation_summary, other_backend_config
    from llamaport.compile.exporters.exported import Exported
    from llamaport.runtime_tests.manifest import Lowering

    with other_backend_config(ckpt, work, max_seq_len) as config:
        config.backend.qnn.enabled, config.backend.qnn.soc_model = True, SOC_MODEL
        config.model.enable_dynamic_shape = config.model.use_sdpa_with_kv_cache = False
        et._validate_args(config)
        manager = et._prepare_for_llama_export(config)
        exported = manager.export()
        exported.run_canonical_optimizations()
        quantizer, dtype = _quantizer(scheme)
        prepared = prepare_pt2e(exported.pre_autograd_graph_module, quantizer)
        with torch.no_grad():
            for window in inputs.calibration.windows:
                _decode(prepared, window)
        exported.pre_autograd_graph_module = convert_pt2e(prepared)
        with torch.no_grad():
            reference = _calibrated_outputs(exported.pre_autograd_graph_module, inputs.eval_set)
        lowered = et._to_edge_and_lower_llama(
            exported, exported.modelname, [], None, [], dtype, qnn=True, enable_dynamic_shape=False,
            use_kv_cache=True, pt2e_quantize=f"qnn_{scheme.linear.kind}", soc_model=SOC_MODEL)
        # export_llama's QNN lowering runs to_executorch itself: the delegation is read from that program.
        delegation = delegation_summary(lowered.edge_manager.exported_program().graph_module, backends)
        pte = work / "model.pte"
        lowered.save_to_pte(str(pte.resolve()))
        quantization = {"linear": {"quantizer": "QnnQuantizer", "quant_dtype": dtype.name, "per_channel": True,
                                   "activation_observer": "MinMaxObserver", "soc_model": SOC_MODEL}}
        return Exported(files=(pte,), quantized_outputs=reference,
                        lowering=Lowering(quantization=quantization, delegation=delegation,
                                          calibration=inputs.calibration.info))


def quantized_outputs(ckpt: LlamaCheckpoint, scheme: QuantScheme, eval_set, context_len: int, artifact=None):
    """The calibrated graph exists only inside `export`, which returns its outputs with the artifact."""
    check_sdk()
    raise StageError("quantized_reference", "the QNN quantized reference is computed by the QNN export itself "
                                            "(Exported.quantized_outputs)")
