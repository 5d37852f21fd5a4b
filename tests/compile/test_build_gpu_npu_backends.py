"""CoreML, Vulkan and QNN: bundles this host compiles but cannot run. Each bundle is built once per session
(an export is 15-35 s); the target's default recipes are in the default suite, the others are `slow`.
What runs here is the quantized eager model (the build's gate and `llamaport check`); what is proven here is
what the exporter changed (Vulkan's vocabulary padding) and that QNN is refused before anything of
ExecuTorch's Qualcomm backend, which downloads its SDK when none is set, is imported."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llamaport import api
from llamaport.compile.pipeline import DEFAULT_MODEL
from llamaport.errors import CheckFailed, ConfigError
from llamaport.quantize import resolve_recipe
from llamaport.quantize.schemes import SCHEMES
from tests.conftest import TEST_CONTEXT

NOT_RUNNABLE = "compiled; not runnable on this host"
TARGETS = {"coreml": "ios-arm64-coreml", "vulkan": "android-arm64-vulkan"}
LINEARS = 4 * 7 + 1  # the bundled model: 4 layers of q, k, v, o, gate, up, down, and the output layer


@pytest.fixture(scope="session")
def gpu_bundle(tmp_path_factory):
    """gpu_bundle(recipe, model=DEFAULT_MODEL) -> Build, built once per session per key."""
    cache: dict = {}
    root = tmp_path_factory.mktemp("gpu_npu_bundles")

    def get(recipe: str, model: Path = DEFAULT_MODEL):
        key = (str(model), recipe)
        if key not in cache:
            target = TARGETS[resolve_recipe(recipe).backend]
            cache[key] = api.build(model, recipe=recipe, target=target, out=root / f"b{len(cache)}",
                                   max_seq_len=TEST_CONTEXT)
        return cache[key]
    return get


def _assert_not_runnable_but_gated(build):
    acc = build.manifest.accuracy
    assert acc.not_runnable_here.startswith(NOT_RUNNABLE) and acc.measured_by == "quantized eager model"
    assert acc.vs_full == acc.quantization_gap and not acc.gate_failures
    assert build.manifest.runtime.runners == ()
    detail = json.loads((build.bundle / "check" / "accuracy.json").read_text())
    assert detail["not_runnable_here"] == acc.not_runnable_here and detail["vs_full"] is None


# --- CoreML ---------------------------------------------------------------------------------------------

def test_coreml_4w_g32_puts_every_linear_in_one_coreml_delegate(gpu_bundle):
    build = gpu_bundle("et-coreml-4w-g32-fp16")
    d = build.manifest.lowering.delegation
    assert d.backends[0] == "coreml" and d.delegated_subgraphs == 1
    # every linear, with its int4 weights' dequantization, is inside the delegate; nothing but the
    # delegate's outputs (getitem) is left outside it
    assert d.delegated_ops["aten_linear_default"] == LINEARS
    assert d.delegated_ops["torchao_dequantize_affine_default"] == LINEARS
    assert set(d.non_delegated_ops) == {"getitem"}
    q = build.manifest.lowering.quantization
    assert q["linear"] == q["output"] and q["compute"] == "fp16" and "int4" in json.dumps(q["linear"])
    _assert_not_runnable_but_gated(build)


def test_coreml_4w_g32_quantization_gap(gpu_bundle):
    """Measured on the bundled model: same-top-1 94.9 %, KLD 0.0046, perplexity ratio 1.016."""
    gap = gpu_bundle("et-coreml-4w-g32-fp16").manifest.accuracy.quantization_gap
    assert gap.same_top1_pct >= 90.0 and gap.kld_mean < 0.01 and gap.ppl_ratio < 1.03


def test_fp16_eager_reference_is_cpu_fp16_at_fp32_kernel_speed(default_checkpoint):
    """The CoreML reference runs PyTorch's fp16 matmul/attention semantics (fp16 in, fp32 accumulation, fp16
    out) through fp32 kernels: the logits are bit-identical to PyTorch's own fp16 kernels."""
    from llamaport.compile.exporters.coreml import Fp16ViaFp32Kernels, quantized_eager_fp16

    ids = torch.tensor([[(7 * i) % 500 + 3 for i in range(48)]])
    for scheme in ("fp16", "4w-g32-fp16"):
        model = quantized_eager_fp16(default_checkpoint, SCHEMES[scheme], 64)
        with torch.inference_mode():
            native = model(ids)
            with Fp16ViaFp32Kernels():
                emulated = model(ids)
        assert native.dtype == emulated.dtype == torch.float16 and torch.equal(native, emulated), scheme


@pytest.mark.slow
def test_coreml_fp16_and_8w_are_near_the_full_model_and_4w_is_half_the_size(gpu_bundle):
    """Measured on the bundled model at context 256: fp16 same-top-1 99.6 % (KLD 9e-7), 8w 98.8 % (KLD 9e-6);
    the 4w program is 0.48 of the fp16 one (1.10 MB against 2.28 MB)."""
    fp16, w8 = gpu_bundle("et-coreml-fp16"), gpu_bundle("et-coreml-8w-fp16")
    for build, floor in ((fp16, 99.0), (w8, 97.0)):
        _assert_not_runnable_but_gated(build)
        assert build.manifest.lowering.delegation.delegated_ops["aten_linear_default"] == LINEARS
        gap = build.manifest.accuracy.quantization_gap
        assert gap.same_top1_pct >= floor and gap.ppl_ratio < 1.01, build.manifest.recipe.id
    assert fp16.manifest.lowering.quantization["linear"] is None
    w4 = gpu_bundle("et-coreml-4w-g32-fp16").manifest.artifact_bytes()
    assert w4 < 0.6 * fp16.manifest.artifact_bytes() and w4 < w8.manifest.artifact_bytes()


# --- llamaport check on a bundle nothing here runs -------------------------------------------------------

def test_check_of_a_coreml_bundle_reports_the_build_checks_and_why_it_did_not_run(gpu_bundle, tmp_path):
    build = gpu_bundle("et-coreml-4w-g32-fp16")
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "llamaport", "check", str(build.bundle), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert NOT_RUNNABLE in proc.stdout and "quantized eager model vs full model" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["not_runnable_here"] == build.manifest.accuracy.not_runnable_here
    assert report["runners"] == {} and report["summary"] is None and report["passed"]
    assert report["quantization_gap"]["same_top1_pct"] == pytest.approx(build.manifest.accuracy.vs_full.same_top1_pct)
    assert NOT_RUNNABLE in (out / "report.html").read_text()


def test_check_of_a_coreml_bundle_gates_the_eager_numbers_and_refuses_speed_gates(gpu_bundle):
    folder = gpu_bundle("et-coreml-4w-g32-fp16").bundle
    report = api.check(folder, gates={"min_top1": 99.0})
    assert not report.passed and [f.metric for f in report.gate_failures] == ["same_top1_pct"]
    with pytest.raises(CheckFailed):
        api.raise_if_failed(report)
    with pytest.raises(ConfigError, match="decode_tokens_per_s.*not measured"):
        api.check(folder, gates={"min_decode_tps": 1.0})
    with pytest.raises(ConfigError, match="not runnable on this host.*baseline"):
        api.check(folder, baseline_model=DEFAULT_MODEL)


# --- Vulkan ----------------------------------------------------------------------------------------------

def test_vulkan_8da4w_g32_is_one_vulkan_delegate_and_keeps_top1(gpu_bundle):
    """Measured on the bundled model: same-top-1 94.1 %, KLD 0.0040, perplexity ratio 0.991 (the XNNPACK
    8da4w-g32 eager model's numbers: the same torchao scheme on the same module)."""
    build = gpu_bundle("et-vulkan-8da4w-g32")
    d = build.manifest.lowering.delegation
    assert d.backends[0] == "vulkan" and d.delegated_subgraphs == 1
    assert d.delegated_ops["aten_mm_default"] == LINEARS  # every linear, dynamically quantized inside the delegate
    assert d.delegated_ops["torchao_choose_qparams_affine_default"] == LINEARS
    assert set(d.non_delegated_ops) == {"getitem"}
    assert build.manifest.lowering.notes == ()  # vocab 512: no padding
    _assert_not_runnable_but_gated(build)
    gap = build.manifest.accuracy.quantization_gap
    assert gap.same_top1_pct >= 90.0 and gap.kld_mean < 0.01 and gap.ppl_ratio < 1.03


def _random_llama(vocab: int):
    from executorch.examples.models.llama.llama_transformer import construct_transformer
    from executorch.examples.models.llama.model_args import ModelArgs

    torch.manual_seed(0)
    args = ModelArgs(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=vocab, hidden_dim=128, max_seq_len=64,
                     max_context_len=64, generate_full_logits=True)
    model = construct_transformer(args).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.2)  # peaked logits, so a changed row would show
    return model


def test_vulkan_vocabulary_padding_changes_no_logit():
    """ExecuTorch 1.5.1's Vulkan 4-bit linear fails for an output width that is not a multiple of 4; the
    exporter pads the output layer with zero rows and slices the logits back. On a random-weight model of
    vocabulary 498 the padded model's logits are the unpadded model's, exactly, in fp32 and under 8da4w."""
    from llamaport.compile.exporters.vulkan import VocabPaddedLinear, needs_padding, pad_output_layer_
    from llamaport.quantize.torchao_map import apply_scheme_

    model = _random_llama(498)
    padded = copy.deepcopy(model)
    note = pad_output_layer_(padded)
    assert isinstance(padded.output, VocabPaddedLinear) and padded.output.weight.shape[0] == 500
    assert "from 498 to 500 rows" in note and "max |difference| 0" in note
    ids = torch.randint(0, 498, (1, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(padded(ids), model(ids)) and padded(ids).shape[-1] == 498
        for scheme in ("8da4w-g32", "8da4w-g64"):
            q = apply_scheme_(copy.deepcopy(model), SCHEMES[scheme])(ids)
            q_padded = apply_scheme_(copy.deepcopy(padded), SCHEMES[scheme])(ids)
            assert torch.equal(q_padded, q), scheme
    assert needs_padding(SCHEMES["8da4w-g32"], 498) and needs_padding(SCHEMES["8da4w-g32"], 514)
    assert not needs_padding(SCHEMES["8da4w-g32"], 500) and not needs_padding(SCHEMES["8da4w-g32"], 512)
    assert not needs_padding(SCHEMES["fp32"], 498)  # ExecuTorch's fp32 Vulkan linear lowers any width


def _widened_default_model(folder: Path, vocab: int) -> Path:
    """The bundled model with `vocab - 512` extra (random, never produced) rows in its embedding and output
    layer: a vocabulary that is not a multiple of 4 and still covers the bundled tokenizer's 512 ids."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder.mkdir()
    for f in DEFAULT_MODEL.iterdir():
        if f.name not in ("model.safetensors", "config.json"):
            shutil.copy(f, folder / f.name)
    config = json.loads((DEFAULT_MODEL / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "vocab_size": vocab}))
    weights = load_file(DEFAULT_MODEL / "model.safetensors")
    extra = torch.randn(vocab - config["vocab_size"], config["hidden_size"], generator=torch.Generator().manual_seed(0))
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        weights[name] = torch.cat([weights[name], 0.02 * extra])
    save_file(weights, folder / "model.safetensors")
    return folder


@pytest.mark.slow
def test_vulkan_bundle_of_a_vocabulary_not_a_multiple_of_4_builds_padded(gpu_bundle, tmp_path_factory):
    """Unpadded, this export fails in ExecuTorch's Vulkan FusePatternsPass ("shape '[514, 4, 1]' is invalid")."""
    model = _widened_default_model(tmp_path_factory.mktemp("vocab514") / "model", 514)
    build = gpu_bundle("et-vulkan-8da4w-g32", model)
    (note,) = build.manifest.lowering.notes
    assert "from 514 to 516 rows" in note and "sliced back to 514" in note
    d = build.manifest.lowering.delegation
    assert d.delegated_subgraphs == 1 and d.delegated_ops["aten_mm_default"] == LINEARS
    assert set(d.non_delegated_ops) == {"getitem"}  # the slice runs inside the delegate too
    assert build.manifest.model.vocab_size == 514
    _assert_not_runnable_but_gated(build)


# --- QNN -------------------------------------------------------------------------------------------------

def _qualcomm_modules() -> set[str]:
    return {m for m in sys.modules if m.startswith("executorch.backends.qualcomm")}


def test_qnn_export_refuses_without_the_sdk_before_importing_qualcomm_code(monkeypatch, tmp_path):
    from llamaport.compile.exporters import qnn

    before = _qualcomm_modules()
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    with pytest.raises(ConfigError, match="^QNN_SDK_ROOT is not set") as e:
        qnn.export(None, SCHEMES["16a8w"], 512, ("qnn", "portable"), tmp_path, None)
    assert "\n" not in str(e.value) and "2.37" in str(e.value)
    monkeypatch.setenv("QNN_SDK_ROOT", str(tmp_path))  # a folder, but not the SDK
    missing = re.escape(f"QNN_SDK_ROOT={tmp_path} has no lib/x86_64-linux-clang/libQnnHtp.so")
    for call in (qnn.check_sdk, lambda: qnn.quantized_outputs(None, SCHEMES["8a8w"], None, 512)):
        with pytest.raises(ConfigError, match=missing):
            call()
    assert _qualcomm_modules() == before and not any(tmp_path.iterdir())
    # the plan stage may call check_sdk: importing it imports no torch (nor anything of ExecuTorch)
    probe = ("import sys; from llamaport.compile.exporters.qnn import check_sdk; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'executorch')))")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_qnn_build_without_the_sdk_exits_2_with_one_line_and_no_download(tmp_path):
    """The refusal comes before any weight is read (the plan stage), in one line, with nothing written, and
    never reaches ExecuTorch's SDK setup (which would print "[QNN] Downloading ..." and fetch the SDK)."""
    env = {k: v for k, v in os.environ.items() if k != "QNN_SDK_ROOT"}
    dead = "http://127.0.0.1:9"  # any download attempt fails at once instead of reaching the network
    env.update(http_proxy=dead, https_proxy=dead, HTTP_PROXY=dead, HTTPS_PROXY=dead, no_proxy="", NO_PROXY="",
               TMPDIR=str(tmp_path), COLUMNS="400")
    llamaport = Path(sys.executable).parent / "llamaport"
    proc = subprocess.run([str(llamaport), "build", "--target", "android-arm64-qnn", "--out", str(tmp_path / "b")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "QNN_SDK_ROOT" in lines[0], proc.stderr
    assert "[QNN]" not in proc.stdout + proc.stderr
    assert list(tmp_path.iterdir()) == []
