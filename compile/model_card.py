"""The bundle's README.md: a Hugging Face model card generated from the manifest (metadata block with
library_name, base_model, quantization; the accuracy table; how to load model/ with its runtime)."""

from __future__ import annotations

from pathlib import Path

from llamaport.runtime_tests.manifest import Manifest

LIBRARY = {"executorch": "executorch", "onnxruntime": "onnxruntime"}


def _front_matter(m: Manifest) -> str:
    base = Path(m.source.path).name
    tags = ["llama", "llamaport", m.recipe.runtime, m.recipe.backend, m.recipe.scheme]
    return "\n".join(["---", f"library_name: {LIBRARY[m.recipe.runtime]}", f"base_model: {base}",
                      "pipeline_tag: text-generation", "tags:", *(f"- {t}" for t in tags),
                      "quantization:", f"  recipe: {m.recipe.id}", f"  scheme: {m.recipe.scheme}",
                      f"  backend: {m.recipe.backend}", "---"])


def render_model_card(m: Manifest) -> str:
    a, q = m.accuracy.vs_full, m.accuracy.quantization_gap
    rows = [("same-top-1 %", a.same_top1_pct, q.same_top1_pct), ("KL divergence (mean)", a.kld_mean, q.kld_mean),
            ("KL divergence (p99)", a.kld_p99, q.kld_p99), ("perplexity ratio", a.ppl_ratio, q.ppl_ratio),
            ("logit SQNR dB", a.logit_sqnr_db, q.logit_sqnr_db), ("greedy match %", a.greedy_match_pct, q.greedy_match_pct)]
    table = "\n".join(["| metric (against the full model) | this bundle on its runtime | quantized reference |",
                       "|---|---|---|", *(f"| {n} | {v:.4g} | {r:.4g} |" for n, v, r in rows)])
    r = m.runtime
    gates = ", ".join(m.accuracy.gates) or "none"
    return f"""{_front_matter(m)}

# {Path(m.source.path).name}: {m.recipe.id}

A {m.model.parameters / 1e6:,.1f}M-parameter Llama ({m.model.num_hidden_layers} layers, hidden {m.model.hidden_size},
vocabulary {m.model.vocab_size}, context {m.model.context_len}) built by llamaport {m.llamaport_version} for the target
`{m.target.name}` ({m.target.description}), scheme `{m.recipe.scheme}`.

## Use

Copy `model/` into the app as it is: it holds exactly what the runtime loads ({r.layout}). Needs {r.min_runtime}.

- Load: `{r.load_with}`
- Tokenizer: `{r.tokenizer}`; BOS: {r.bos}
- Stop at EOS ids {list(m.model.eos_ids)}; BOS id {m.model.bos_id}
- Chat template: {f"`{r.chat_template}`" if r.chat_template else "none (a base model)"}

`check/` holds what the bundle is judged by (golden outputs of the full model, the build's accuracy); it is not
needed at run time. `manifest.json` lists every file with its sha256.

## Accuracy

Measured at build time against the full model (transformers, fp32) on {m.golden.positions} teacher-forced
positions of `{Path(m.golden.eval_source).name}` and {m.golden.prompts} greedy prompts of {m.golden.greedy_tokens} tokens.
Gates: {gates}.

{table}
{_measured_by(m)}{_npu_section(m)}"""


def _measured_by(m: Manifest) -> str:
    acc = m.accuracy
    if acc.not_runnable_here:
        return f"\n**{acc.not_runnable_here}.** Both columns are the quantized eager model on this host.\n"
    if acc.measured_by == "tosa-reference-model":
        return ("\n\"This bundle\" is the NPU program on the TOSA reference model (tosa-tools), run on the build host: "
                "the TOSA that Vela compiled into model.pte, with TOSA's exact integer semantics. It is not a run on "
                f"the silicon. Teacher-forced positions are read in windows of {m.golden.window} tokens, the program's "
                "fixed length.\n")
    return ""


def _npu_section(m: Manifest) -> str:
    est, cal = m.lowering.npu_estimate, m.lowering.calibration
    lines = []
    if cal is not None:
        source = ("ExecuTorch export_llama's one example input (a dummy: kept only to measure what calibration is worth)"
                  if cal.source == "dummy" else f"`{Path(cal.source).name}`")
        lines += ["", "## Calibration", "",
                  f"Static int8: activation ranges measured on {cal.samples} windows of {cal.tokens_per_sample} tokens "
                  f"of {source}, never the eval text."]
    if est is not None:
        cpu = ", ".join(f"{op} x{n}" for op, n in est.cpu_ops.items()) or "none"
        lines += ["", "## NPU estimate (Vela; an estimate, not a measurement)", "",
                  f"{est.compiler} for {est.accelerator} ({est.system_config}, {est.memory_mode}, {est.clock_mhz:g} MHz): "
                  f"one {est.forward_tokens}-token forward takes an estimated **{est.estimated_ms:.3f} ms** "
                  f"({est.npu_cycles:,} NPU / {est.total_cycles:,} total cycles), SRAM {est.sram_bytes / 1024:.1f} KiB, "
                  f"flash {est.flash_bytes / 1024:.1f} KiB, in {len(est.delegates)} NPU delegate(s). "
                  f"Left on the CPU by ExecuTorch: {cpu}."]
    dec = m.lowering.npu_decode_estimate
    if dec is not None:
        lines += ["", f"`decode.pte` (one token, int8 KV cache): an estimated **{dec.estimated_ms:.3f} ms** per token "
                      f"(~{1000 / dec.estimated_ms:.0f} tokens/s), SRAM {dec.sram_bytes / 1024:.1f} KiB, flash "
                      f"{dec.flash_bytes / 1024:.1f} KiB, in {len(dec.delegates)} NPU delegate(s). Left on the CPU: "
                      f"{', '.join(f'{op} x{n}' for op, n in dec.cpu_ops.items()) or 'none'}."]
    return "\n".join(lines) + ("\n" if lines else "")


def write_model_card(m: Manifest, bundle: Path) -> Path:
    path = Path(bundle) / "README.md"
    path.write_text(render_model_card(m), encoding="utf-8")
    return path
