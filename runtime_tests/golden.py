"""Golden outputs: what a device needs to be judged without the full model, stored in the bundle.

Two references, scored at build time on the same eval set:
  full       the full model (transformers, fp32): what users care about;
  quantized  the recipe's scheme applied in eager (ExecuTorch's Llama): full vs quantized is the
             quantization gap, quantized vs the artifact on a runtime is the lowering gap.

Each reference keeps, per teacher-forced position, the log-sum-exp and the log-probability of the actual
next token (perplexity and same-top-1 are exact), and either every logit (small vocabularies) or, for
large ones, its most probable ids with their logits: as many as hold KEPT_MASS of the position's
probability (at least MIN_K, at most what the byte budget allows; "adaptive top-k", ragged), plus three numbers on the rest
(the tail T): its mass p_T, its Σ_T p log p and its largest probability p_max. From those and what a
device sends back about its own logits on the tail (runtime_tests.device.scores) the host bounds the
full-vocabulary KL divergence exactly from both sides (runtime_tests.metrics.kld_interval), so a stored
golden can never report a KLD below the true one: the upper end is what gates judge. Where the cap
bites (flat outputs: random weights) the interval widens, and the report says by how much.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from llamaport.errors import ConfigError

SCHEMA_VERSION = 2
# Bytes of logits a reference may keep. The full model's (what gates judge) keeps every logit of vocabularies
# up to 65k (Llama 2, TinyLlama, SmolLM's 49k) at the build's 255 positions, so its KLD is exact there; above
# that (Llama 3's 128k), an adaptive top-k whose cap fits the same bytes (8 a kept id: int32 id + fp32 logit),
# with an exact interval. The interval's width is about the tail's mass times the spread of the device's
# tail log-probabilities (a dozen nats): only keeping more ids narrows it, as no summary that hides which
# ids hold the tail's mass can. The quantized reference only measures the lowering gap, a diagnostic: less.
FULL_LOGITS_MAX_BYTES = 64 << 20
QUANTIZED_LOGITS_MAX_BYTES = 8 << 20
KEPT_MASS = 1 - 1e-6  # each position keeps ids until they hold this much of its probability ...
MIN_K = 64  # ... and never fewer than this many
BYTES_PER_KEPT_ID = 8
_ROWS_PER_CHUNK = 32  # sorting a 128k vocabulary in float64 a chunk at a time keeps the build's memory flat


@dataclass
class Reference:
    """One model's outputs on the eval set. Row i scores ids[i + 1]."""

    lse: torch.Tensor  # [positions] float64
    next_logprob: torch.Tensor  # [positions] float64
    greedy: list[list[int]]  # per prompt
    logits: torch.Tensor | None = None  # [positions, vocab] float32, kind "full"
    # kind "topk": position i keeps topk_counts[i] ids, most probable first, flattened in position order
    topk_logits: torch.Tensor | None = None  # [kept] float32
    topk_ids: torch.Tensor | None = None  # [kept] int32
    topk_counts: torch.Tensor | None = None  # [positions] int32
    tail_mass: torch.Tensor | None = None  # [positions] float64: p_T, the probability not kept
    tail_plogp: torch.Tensor | None = None  # [positions] float64: Σ over the tail of p log p
    tail_pmax: torch.Tensor | None = None  # [positions] float64: the largest probability in the tail

    @property
    def kind(self) -> str:
        return "full" if self.logits is not None else "topk"

    @classmethod
    def from_logits(cls, logits: torch.Tensor, ids: list[int], greedy: list[list[int]],
                    max_full_bytes: int = FULL_LOGITS_MAX_BYTES, kept_mass: float = KEPT_MASS,
                    min_k: int = MIN_K) -> "Reference":
        """Every logit where they fit in max_full_bytes, else an adaptive top-k capped to fit them (at least
        min_k ids a position)."""
        rows = logits[:-1].float()
        lse = torch.logsumexp(rows.double(), dim=-1)
        next_logprob = rows.double().gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1) - lse
        if rows.numel() * 4 <= max_full_bytes:
            return cls(lse, next_logprob, greedy, logits=rows.clone())
        max_k = max(min_k, max_full_bytes // (BYTES_PER_KEPT_ID * rows.shape[0]))
        parts = [_keep_mass(rows[i:i + _ROWS_PER_CHUNK], lse[i:i + _ROWS_PER_CHUNK], kept_mass, min_k, max_k)
                 for i in range(0, rows.shape[0], _ROWS_PER_CHUNK)]
        ids_kept, logits_kept, counts, mass, plogp, pmax = (torch.cat([p[j] for p in parts]) for j in range(6))
        return cls(lse, next_logprob, greedy, topk_logits=logits_kept, topk_ids=ids_kept, topk_counts=counts,
                   tail_mass=mass, tail_plogp=plogp, tail_pmax=pmax)

    def top1(self) -> torch.Tensor:
        return self.logits.argmax(-1) if self.kind == "full" else self.topk_ids[self.row_starts()].long()

    def row_starts(self) -> torch.Tensor:
        """Where each position's kept ids begin in the flattened topk_ids (its most probable id)."""
        return torch.cumsum(self.topk_counts.long(), 0) - self.topk_counts.long()

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        out = {f"{prefix}.lse": self.lse, f"{prefix}.next_logprob": self.next_logprob}
        for i, g in enumerate(self.greedy):
            out[f"{prefix}.greedy.{i}"] = torch.tensor(g, dtype=torch.int64)
        for name in _STORED:
            if getattr(self, name) is not None:
                out[f"{prefix}.{name}"] = getattr(self, name).contiguous()
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], prefix: str, prompts: int) -> "Reference":
        return cls(lse=t[f"{prefix}.lse"], next_logprob=t[f"{prefix}.next_logprob"],
                   greedy=[t[f"{prefix}.greedy.{i}"].tolist() for i in range(prompts)],
                   **{name: t.get(f"{prefix}.{name}") for name in _STORED})


_STORED = ("logits", "topk_logits", "topk_ids", "topk_counts", "tail_mass", "tail_plogp", "tail_pmax")


def _keep_mass(rows: torch.Tensor, lse: torch.Tensor, kept_mass: float, min_k: int, max_k: int):
    """Adaptive top-k of a chunk of rows: (ids, logits, counts, tail mass, tail Σ p log p, tail max p)."""
    vocab = rows.shape[1]
    values, order = torch.sort(rows, dim=-1, descending=True, stable=True)  # stable: column 0 is argmax's choice
    logp = values.double() - lse.unsqueeze(1)
    p = logp.exp()
    # k = the fewest ids whose mass reaches kept_mass: one more than the count of prefixes still short of it
    short = (torch.cumsum(p, dim=-1) < kept_mass).sum(-1) + 1
    counts = short.clamp(min(min_k, vocab), min(max_k, vocab))
    in_tail = torch.arange(vocab).unsqueeze(0) >= counts.unsqueeze(1)
    tail_p = torch.where(in_tail, p, torch.zeros_like(p))
    mass = tail_p.sum(-1)
    plogp = torch.where(in_tail & (p > 0), p * logp, torch.zeros_like(p)).sum(-1)
    pmax = torch.where(counts < vocab, p.gather(1, counts.clamp_max(vocab - 1).unsqueeze(1)).squeeze(1),
                       torch.zeros_like(mass))
    keep = ~in_tail
    return (order[keep].int(), values[keep].float(), counts.int(), mass, plogp, pmax)


@dataclass
class Golden:
    ids: list[int]  # BOS + eval text, teacher-forced
    prompt_texts: list[str]  # greedy prompts as text (for runners that take text) ...
    prompts: list[list[int]]  # ... and as the ids the bundle's tokenizer gives them (BOS first)
    greedy_tokens: int
    latency_prompt_text: str  # the prompt latency is timed on ...
    latency_prompt: list[int]  # ... and its ids
    eval_source: str
    references: dict[str, Reference]
    quantization_gap: dict = field(default_factory=dict)  # full vs quantized, measured at build

    def metadata(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "ids": self.ids, "prompt_texts": self.prompt_texts,
                "prompts": self.prompts, "greedy_tokens": self.greedy_tokens,
                "latency_prompt_text": self.latency_prompt_text, "latency_prompt": self.latency_prompt,
                "eval_source": self.eval_source, "references": {k: r.kind for k, r in self.references.items()},
                "quantization_gap": self.quantization_gap}

    def save(self, path: Path) -> Path:
        from safetensors.torch import save_file

        tensors = {}
        for name, ref in self.references.items():
            tensors.update(ref.tensors(name))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata={"llamaport_golden": json.dumps(self.metadata())})
        return path

    @classmethod
    def load(cls, path: Path) -> "Golden":
        """From a golden.safetensors file (a bundle's check/golden.safetensors)."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: the bundle carries no golden outputs; rebuild it with this llamaport")
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["llamaport_golden"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if meta["schema_version"] != SCHEMA_VERSION:
            raise ConfigError(f"{path}: golden schema {meta['schema_version']}, this llamaport reads {SCHEMA_VERSION}")
        refs = {name: Reference.from_tensors(tensors, name, len(meta["prompts"])) for name in meta["references"]}
        return cls(ids=meta["ids"], prompt_texts=meta["prompt_texts"], prompts=meta["prompts"],
                   greedy_tokens=meta["greedy_tokens"], latency_prompt_text=meta["latency_prompt_text"],
                   latency_prompt=meta["latency_prompt"], eval_source=meta["eval_source"], references=refs,
                   quantization_gap=meta["quantization_gap"])
