"""What each exporter is and can do, in one frozen record per exporter: the recipe prefix, the runtime and
backends it builds for, the files its artifact is made of, the layout an app loads, the runners that
check it, the schemes it can express, and its code as dotted entry points (llamaport.entry.load_entry), so
reading this table imports nothing heavy. Adding an exporter is adding one record here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from llamaport.quantize.schemes import QuantScheme

_C = "llamaport.compile.exporters"


@dataclass(frozen=True)
class Exporter:
    id: str
    recipe_prefix: str
    runtime: str
    backends: tuple[str, ...]
    artifact: str  # the model file the runtime loads ...
    artifact_data: bool  # ... and whether external weight data sits beside it (model.onnx.data)
    layout: str  # what an app loads: executorch-pte | onnxruntime-genai | huggingface-onnx
    load_with: str  # how an app loads the bundle's model/ folder with the runtime as it is
    app_config: str | None  # the runtime's own config file in model/, if the layout has one
    runtime_package: str  # the package whose version is the bundle's minimum runtime
    runners: tuple[str, ...]  # runner ids that check it; the first scores accuracy and gives the headline
    builds: Callable[[QuantScheme], bool]  # the schemes it can express
    export: str  # (checkpoint, scheme, context_len, backends, work) -> Exported
    quantized_reference: str  # (checkpoint, scheme, eval_set, context_len, artifact) -> (logits, greedy)
    # A fixed-length forward without KV cache (NPU programs): eval text is scored in windows of the
    # context length and greedy runs re-read the whole window each step, for every reference alike.
    windowed: bool = False
    extra_artifacts: tuple[str, ...] = ()  # further program files in model/ the app loads (an NPU's decode program)


def _cpu_float(s: QuantScheme) -> bool:
    """CPU paths compute in fp32 and quantize activations dynamically, never by calibration."""
    return s.compute == "fp32" and not s.static


def _rounding_ours_or_default(s: QuantScheme) -> bool:
    """Rounding by the library's default, or by llamaport's GPTQ (quantize.gptq), which writes the grid
    itself; onnxruntime's own algorithms (rtn, hqq) exist only where onnxruntime quantizes."""
    return s.algorithms() <= {"gptq"}


def _fp32_kv_cache(s: QuantScheme) -> bool:
    """Only ExecuTorch's XNNPACK path has an int8 KV cache (its quantized KV cache and SDPA custom ops)."""
    return s.kv_cache == 32


def _executorch_builds(s: QuantScheme) -> bool:
    return _cpu_float(s) and _rounding_ours_or_default(s)  # see quantize.torchao_map


def _ethos_u_builds(s: QuantScheme) -> bool:
    return s.static and s.compute == "fp32" and _fp32_kv_cache(s)


def _coreml_builds(s: QuantScheme) -> bool:
    """CoreML runs fp16; weights stay fp16 or are palettized/linearly quantized to 8 or 4 bits by coremltools."""
    body, head = s.linear, s.output_quant
    return (s.compute == "fp16" and body.kind in ("fp32", "8w", "4w") and head == body and not s.algorithms()
            and s.embedding.bits == 32 and not s.keep8 and _fp32_kv_cache(s))


def _vulkan_builds(s: QuantScheme) -> bool:
    body, head = s.linear, s.output_quant
    return _cpu_float(s) and body.kind in ("fp32", "8da4w") and head == body and not s.algorithms() \
        and s.embedding.bits == 32 and not s.keep8 and _fp32_kv_cache(s)


def _onnx_embedding_fits(s: QuantScheme) -> bool:
    """onnxruntime quantizes an embedding only as GatherBlockQuantized, 4-bit, in the linears' blocks."""
    emb = s.embedding
    return emb.bits == 32 or (emb.bits == 4 and s.linear.kind in ("4w", "8da4w") and emb.group_size == s.linear.group_size
                              and not s.algorithms() and not s.keep8)


def _ort_genai_builds(s: QuantScheme) -> bool:
    """The builder quantizes every MatMul alike (MatMulNBits, 4-bit) except an output layer it may skip; it
    has no per-channel int8 MatMul, and its algorithms are not the ones our ids name. GPTQ grids and
    8-bit units of a mixed-precision plan are written into its MatMulNBits afterwards (quantize.onnx_grid)."""
    body, head = s.linear, s.output_quant
    return (_cpu_float(s) and body.kind in ("fp32", "4w", "8da4w") and _rounding_ours_or_default(s) and _onnx_embedding_fits(s)
            and (head == body or head.kind == "fp32") and _fp32_kv_cache(s))


def _optimum_onnx_builds(s: QuantScheme) -> bool:
    """onnxruntime's quantizers on the exported graph: MatMulNBits (4w, 8da4w) or dynamic int8 (8da8w)."""
    body, head = s.linear, s.output_quant
    return (_cpu_float(s) and body.kind in ("fp32", "4w", "8da4w", "8da8w") and _onnx_embedding_fits(s)
            and "gptq" not in s.algorithms() and not s.keep8
            and (head == body or head.kind == "fp32") and _fp32_kv_cache(s))


EXPORTERS: dict[str, Exporter] = {e.id: e for e in (
    Exporter(
        id="executorch", recipe_prefix="et", runtime="executorch", backends=("xnnpack",),
        artifact="model.pte", artifact_data=False, layout="executorch-pte", app_config=None,
        load_with="executorch.extension.llm.runner.TextLLMRunner('model/model.pte', 'model/<tokenizer>'); "
                  "Android LlmModule / iOS TextLLMRunner with the same two paths",
        runtime_package="executorch", runners=("executorch-runtime", "executorch-llm-runner"),
        builds=_executorch_builds, export=f"{_C}.executorch:export",
        quantized_reference="llamaport.compile.golden_build:quantized_eager_outputs"),
    Exporter(
        id="executorch-ethos-u", recipe_prefix="et", runtime="executorch", backends=("ethos-u55", "ethos-u85"),
        artifact="model.pte", artifact_data=False, layout="executorch-pte", app_config=None,
        load_with="ExecuTorch's arm_executor_runner (examples/arm/executor_runner) on a Corstone-300 (U55) or "
                  "Corstone-320 (U85) system, the programs placed in flash: model.pte is one fixed-length forward "
                  "(every position's logits, no cache), decode.pte one token with an int8 KV cache",
        runtime_package="executorch", runners=("tosa-reference-model",), builds=_ethos_u_builds,
        export=f"{_C}.ethos_u:export", quantized_reference=f"{_C}.ethos_u:quantized_outputs", windowed=True,
        extra_artifacts=("decode.pte",)),
    Exporter(
        id="executorch-coreml", recipe_prefix="et", runtime="executorch", backends=("coreml",),
        artifact="model.pte", artifact_data=False, layout="executorch-pte", app_config=None,
        load_with="executorch.extension.llm.runner.TextLLMRunner('model/model.pte', 'model/<tokenizer>') on iOS/macOS "
                  "(the CoreML backend linked in)",
        runtime_package="executorch", runners=(), builds=_coreml_builds, export=f"{_C}.coreml:export",
        quantized_reference=f"{_C}.coreml:quantized_outputs"),
    Exporter(
        id="executorch-vulkan", recipe_prefix="et", runtime="executorch", backends=("vulkan",),
        artifact="model.pte", artifact_data=False, layout="executorch-pte", app_config=None,
        load_with="Android LlmModule('model/model.pte', 'model/<tokenizer>') with the Vulkan backend linked in",
        runtime_package="executorch", runners=(), builds=_vulkan_builds, export=f"{_C}.vulkan:export",
        quantized_reference="llamaport.compile.golden_build:quantized_eager_outputs"),
    Exporter(
        id="executorch-qnn", recipe_prefix="et", runtime="executorch", backends=("qnn",),
        artifact="model.pte", artifact_data=False, layout="executorch-pte", app_config=None,
        load_with="Android LlmModule('model/model.pte', 'model/<tokenizer>') with the QNN backend and the QNN runtime libraries",
        runtime_package="executorch", runners=(), builds=_ethos_u_builds, export=f"{_C}.qnn:export",
        quantized_reference=f"{_C}.qnn:quantized_outputs"),
    Exporter(
        id="ort-genai", recipe_prefix="ortgenai", runtime="onnxruntime", backends=("cpu",),
        artifact="model.onnx", artifact_data=True, layout="onnxruntime-genai", app_config="genai_config.json",
        load_with="onnxruntime_genai.Model('model')", runtime_package="onnxruntime-genai",
        runners=("onnxruntime-genai", "onnxruntime"), builds=_ort_genai_builds, export=f"{_C}.onnx_genai:export",
        quantized_reference=f"{_C}.onnx_reference:dequantized_outputs"),
    Exporter(
        id="optimum-onnx", recipe_prefix="onnx", runtime="onnxruntime", backends=("cpu",),
        artifact="model.onnx", artifact_data=True, layout="huggingface-onnx", app_config="config.json",
        load_with="optimum.onnxruntime.ORTModelForCausalLM.from_pretrained('model')", runtime_package="onnxruntime",
        runners=("onnxruntime",), builds=_optimum_onnx_builds, export=f"{_C}.onnx_optimum:export",
        quantized_reference=f"{_C}.onnx_reference:dequantized_outputs"),
)}
