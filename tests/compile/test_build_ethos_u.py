"""Arm Ethos-U builds: calibrated static int8 through ExecuTorch's Arm backend, Vela's estimate in the
manifest, and the bundle's own NPU program checked on the TOSA reference model against the full model.
The U85 bundle is built once per session (about 2 minutes: ExecuTorch's Arm passes); U55, 16-bit
activations and the dummy-calibration comparison are `slow`."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llamaport.compile.pipeline import DEFAULT_MODEL
from llamaport.targets import resolve_target
from tests.fixtures.arm_toolchain import arm_toolchain  # noqa: F401

U85, U55 = "et-ethos-u85-8a8w", "et-ethos-u55-8a8w"
LLAMAPORT = [sys.executable, "-m", "llamaport"]


def test_hf_rope_layout_gives_the_full_models_logits(default_checkpoint):
    """The U85 program uses Hugging Face's rotate-half RoPE (no slice/concat pairs on the NPU): with the q/k
    rows left unpermuted it computes what the Meta layout and the full model compute."""
    from llamaport.compile.exporters.ethos_u import fixed_length_model, rope_layout
    from llamaport.compile.reference import full_model

    assert rope_layout(default_checkpoint.config) == "hf-rotate-half"
    ids = torch.tensor([list(range(1, 33))], dtype=torch.int32)
    with torch.no_grad():
        hf_layout = fixed_length_model(default_checkpoint, 32, "hf-rotate-half")(ids)[0]
        meta_layout = fixed_length_model(default_checkpoint, 32, "meta-interleaved")(ids)[0]
        full = full_model(default_checkpoint)(ids.long()).logits[0]
    assert (hf_layout - meta_layout).abs().max() < 1e-4
    assert (hf_layout - full).abs().max() < 1e-4


def test_scaled_rope_keeps_the_meta_layout_that_implements_it(tiny_random_hf):
    """Llama 3.1 rope_scaling is implemented only on ExecuTorch's Meta-layout path: such a model keeps that
    layout, and its program matches the full model (scaling included; dropping it would differ)."""
    from llamaport.compile.exporters.ethos_u import fixed_length_model, rope_layout
    from llamaport.compile.reference import full_model
    from llamaport.compile.sources import load_checkpoint

    ckpt = load_checkpoint(tiny_random_hf)
    assert rope_layout(ckpt.config) == "meta-interleaved"
    ids = torch.tensor([[(7 * i) % 500 + 3 for i in range(64)]], dtype=torch.int32)
    with torch.no_grad():
        program = fixed_length_model(ckpt, 64, rope_layout(ckpt.config))(ids)[0]
        full = full_model(ckpt)(ids.long()).logits[0]
        unscaled = dict(ckpt.config, rope_scaling=None)
        dropped = fixed_length_model(dataclasses.replace(ckpt, config=unscaled), 64, "meta-interleaved")(ids)[0]
    error, dropped_error = (program - full).abs().max(), (dropped - full).abs().max()
    assert error < 1e-5 and dropped_error > 20 * error, (error, dropped_error)  # random weights: small logits


def test_static_recipes_refuse_missing_or_eval_calibration_text_before_reading_weights(tmp_path):
    no_split = tmp_path / "model"
    no_split.mkdir()
    for f in DEFAULT_MODEL.iterdir():
        if f.name != "calibration.txt":
            (no_split / f.name).symlink_to(f)
    cases = [
        (["--calibration-text", str(DEFAULT_MODEL / "eval.txt")], "is the eval text"),
        (["--calibration-text", str(tmp_path / "none.txt")], "--calibration-text"),
        (["--calibration-samples", "0"], "--calibration-samples must be at least 1"),
        ([str(no_split)], "has no calibration.txt"),
    ]
    for extra, words in cases:
        out = tmp_path / "b"
        proc = subprocess.run([*LLAMAPORT, "build", "-t", "ethos-u85-256", "--out", str(out), *extra],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not out.exists()
    proc = subprocess.run([*LLAMAPORT, "build", "--dry-run", "--out", str(tmp_path / "c"), "--calibration-text",
                           str(DEFAULT_MODEL / "calibration.txt")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "apply to calibrated recipes only" in proc.stderr


def test_calibration_windows_come_from_the_calibration_split(default_checkpoint):
    from llamaport.compile.calibration import DUMMY, build_calibration_set
    from llamaport.runtime_tests.tokenizer import load_tokenizer

    tok = load_tokenizer(DEFAULT_MODEL / "tokenizer.json")
    real = build_calibration_set(tok, DEFAULT_MODEL / "calibration.txt", 16, 32, 512)
    assert len(real.windows) == 16 and {len(w) for w in real.windows} == {32}
    assert real.info.samples == 16 and real.info.text_sha256 and real.info.source.endswith("calibration.txt")
    eval_text = (DEFAULT_MODEL / "eval.txt").read_text()
    assert not set((DEFAULT_MODEL / "calibration.txt").read_text().splitlines()) & set(eval_text.splitlines())
    dummy = build_calibration_set(tok, DUMMY, 16, 32, 512)
    assert dummy.windows == [[i % 511 + 1 for i in range(32)]] and dummy.info.source == "dummy"


@pytest.fixture(scope="session")
def u85(bundle):
    return bundle(DEFAULT_MODEL, U85)


def test_u85_bundle_is_one_npu_delegate_with_vela_estimate_inside_the_boards_memory(u85):
    m = u85.manifest
    target = resolve_target("ethos-u85-256")
    assert m.target.npu == target.npu and m.model.rope_layout == "hf-rotate-half" and m.golden.window == 32
    d = m.lowering.delegation
    assert d.delegated_subgraphs == 1 and not any("linear" in op or "mm" in op for op in d.non_delegated_ops)
    est = m.lowering.npu_estimate
    assert est.compiler == "ethos-u-vela 5.1.0" and est.accelerator == "ethos-u85-256" and est.forward_tokens == 32
    assert 0.1 < est.estimated_ms < 5 and est.npu_cycles <= est.total_cycles
    assert est.delegates[0].cpu_ops == 0 and est.delegates[0].npu_ops > 100
    assert 0 < est.sram_bytes <= target.npu.sram_bytes and 0 < est.flash_bytes <= target.npu.flash_bytes
    cal = m.lowering.calibration
    assert cal.samples == 16 and cal.tokens_per_sample == 32 and cal.source.endswith("calibration.txt")
    assert (u85.bundle / "check" / "ethos_u_edge.pt2").is_file() and (u85.bundle / "check" / "delegate-0.tosa").is_file()


def test_u85_bundle_decodes_with_an_int8_kv_cache_on_the_npu(u85):
    """decode.pte: one token a call, the int8 KV cache as its state; the greedy runs of the quantized reference
    and of the check come from it, and on the reference model they are its fake-quantized graph's tokens."""
    m = u85.manifest
    assert m.runtime.artifact_files == ("model/model.pte", "model/decode.pte")
    dec = m.lowering.npu_decode_estimate
    assert dec.forward_tokens == 1 and len(dec.delegates) >= 1 and 0 < dec.estimated_ms < 5
    assert not any("linear" in op or "mm" in op for op in dec.cpu_ops)
    assert m.lowering.quantization["kv_cache"].startswith("int8")
    gated = m.lowering.npu_gate_values()  # per generated token, the larger SRAM, the flash of both programs
    assert gated.npu_estimated_ms == dec.estimated_ms
    assert gated.npu_flash_bytes == dec.flash_bytes + m.lowering.npu_estimate.flash_bytes
    assert gated.npu_sram_bytes == max(dec.sram_bytes, m.lowering.npu_estimate.sram_bytes)
    detail = json.loads((u85.bundle / "check" / "accuracy.json").read_text())
    assert detail["lowering_gap"]["greedy_identical"] and detail["lowering_gap"]["greedy_match_pct"] == 100.0


def test_u85_reference_model_matches_the_full_model_and_its_own_quantized_graph(u85):
    """The gate of the issue: the NPU program, on the TOSA reference model, has >= 85% same-top-1 against the
    full model; against the fake-quantized graph it was lowered from, it agrees everywhere (lowering gap)."""
    acc = u85.manifest.accuracy
    assert acc.measured_by == "tosa-reference-model" and acc.not_runnable_here is None
    assert acc.vs_full.same_top1_pct >= 85.0 and not acc.gate_failures
    detail = json.loads((u85.bundle / "check" / "accuracy.json").read_text())
    lowering = detail["lowering_gap"]
    assert lowering["same_top1_pct"] == 100.0 and lowering["greedy_identical"] and lowering["logit_sqnr_db"] > 60


def test_check_reports_the_simulator_and_the_npu_estimate_not_a_timing(checked, u85):
    report, folder = checked(DEFAULT_MODEL, U85)
    s = report.summary
    assert list(report.runners) == ["tosa-reference-model"] and "not the silicon" in report.simulator
    assert report.primary.latency.decode_tokens_per_s is None and report.primary.latency.token_latencies_s == ()
    decode_ms = u85.manifest.lowering.npu_decode_estimate.estimated_ms
    assert s.decode_source == "npu-estimate" and s.decode_tokens_per_s == pytest.approx(1000 / decode_ms)
    assert report.npu_estimate == u85.manifest.lowering.npu_estimate and report.bundle.calibration.samples == 16
    assert s.same_top1_pct >= 85.0 and report.passed
    assert {g.split(" <= ")[0] for g in report.gates} >= {"npu_sram_bytes", "npu_flash_bytes"}
    page = (folder / "report.html").read_text()
    assert "an estimate, not a measurement" in page and "Not run on the NPU" in page
    assert report.primary.accuracy.lowering_gap.same_top1_pct == 100.0


def test_reference_runner_refuses_check_files_of_another_program(u85, arm_toolchain):
    from llamaport.runtime_tests.device.drivers.tosa_reference import TosaReferenceModel

    with pytest.raises(RuntimeError, match="not the one in model.pte"):
        TosaReferenceModel(u85.bundle, u85.bundle / "check" / "golden.safetensors", str(arm_toolchain))


@pytest.mark.slow
def test_u55_keeps_the_embedding_on_the_cpu_and_still_matches(bundle):
    build = bundle(DEFAULT_MODEL, U55)
    est, d = build.manifest.lowering.npu_estimate, build.manifest.lowering.delegation
    assert est.accelerator == "ethos-u55-128" and d.delegated_subgraphs >= 2
    assert any("embedding" in op or "index_select" in op for op in est.cpu_ops)
    assert build.manifest.accuracy.vs_full.same_top1_pct >= 85.0


@pytest.mark.slow
def test_calibration_on_real_text_beats_exporters_dummy_input(bundle, u85):
    """What export_llama does without calibration data (one example input) against the calibration split."""
    dummy = bundle(DEFAULT_MODEL, U85, calibration_text="dummy").manifest
    assert dummy.lowering.calibration.source == "dummy" and dummy.lowering.calibration.samples == 1
    real, fake = u85.manifest.accuracy.vs_full, dummy.accuracy.vs_full
    print(f"\nvs full: calibrated KLD {real.kld_mean:.3e} ppl ratio {real.ppl_ratio:.4f} top-1 {real.same_top1_pct:.1f}% "
          f"greedy {real.greedy_match_pct:.1f}%; dummy KLD {fake.kld_mean:.3e} ppl ratio {fake.ppl_ratio:.4f} "
          f"top-1 {fake.same_top1_pct:.1f}% greedy {fake.greedy_match_pct:.1f}%")
    # Measured here: KLD 1.26e-2 vs 6.98e-2, perplexity ratio 0.964 vs 1.064, greedy match 29.8% vs 14.0%
    # (same-top-1 88.2% both: this model's argmax survives; its distribution does not).
    assert real.kld_mean * 3 < fake.kld_mean and real.ppl_ratio < fake.ppl_ratio
    assert real.greedy_match_pct > fake.greedy_match_pct


@pytest.mark.slow
def test_16a8w_lowering_still_differs_from_its_graph(default_checkpoint, tmp_path, arm_toolchain):
    """Keeps the ethos-u85 16a8w limit honest (targets/backends.py): the exporter is run directly (targets refuse
    the recipe), and the lowered program on the reference model is compared with its own fake-quantized graph.
    When ExecuTorch's lowering computes the graph, this fails: drop the limit."""
    from llamaport.compile.calibration import build_calibration_set
    from llamaport.compile.eval_data import build_eval_set
    from llamaport.compile.exporters.ethos_u import export
    from llamaport.compile.exporters.exported import ExportInputs
    from llamaport.quantize.schemes import resolve_scheme
    from llamaport.runtime_tests.device.drivers.tosa_reference import TosaReferenceModel
    from llamaport.runtime_tests.tokenizer import load_tokenizer

    tok = load_tokenizer(DEFAULT_MODEL / "tokenizer.json")
    eval_set = build_eval_set(tok, None, 32, windowed=True)
    calibration = build_calibration_set(tok, DEFAULT_MODEL / "calibration.txt", 16, 32, 512)
    work, bundle = tmp_path / "work", tmp_path / "bundle"
    for folder in (work, bundle / "model", bundle / "check"):
        folder.mkdir(parents=True)
    exported = export(default_checkpoint, resolve_scheme("16a8w"), 32, ("ethos-u85", "portable"), work,
                      ExportInputs(resolve_target("ethos-u85-256"), eval_set, calibration))
    for f in exported.files:  # model.pte and decode.pte
        f.rename(bundle / "model" / f.name)
    for f in exported.check_files:
        f.rename(bundle / "check" / f.name)
    program = TosaReferenceModel(bundle, bundle / "model" / "model.pte", str(arm_toolchain))
    on_reference_model = program.teacher_forced_logits(eval_set.ids).argmax(-1)
    graph = exported.quantized_outputs[0].argmax(-1).numpy()
    agreement = float((on_reference_model == graph).mean())
    print(f"\n16a8w: reference model vs its fake-quantized graph, same top-1 {100 * agreement:.1f}%")
    assert agreement < 0.9
