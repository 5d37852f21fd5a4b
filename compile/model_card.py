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
"""


def write_model_card(m: Manifest, bundle: Path) -> Path:
    path = Path(bundle) / "README.md"
    path.write_text(render_model_card(m), encoding="utf-8")
    return path
