"""Golden outputs: what a device needs to be judged without the full model, stored in the bundle.

Two references, scored at build time on the same eval set:
  full       the full model (transformers, fp32): what users care about;
  quantized  the recipe's scheme applied in eager (ExecuTorch's Llama): full vs quantized is the
             quantization gap, quantized vs the artifact on a runtime is the lowering gap.

Each reference keeps, per teacher-forced position, either every logit (small vocabularies) or the
top-k logits with their ids, plus the log-sum-exp and the log-probability of the actual next token.
That gives perplexity and same-top-1 exactly, and KLD over the top-k plus one tail bucket, which is a
lower bound of the full KLD (merging outcomes never increases KL) and tight when the top-k hold most
of the mass. The same trade llama.cpp's KLD base file makes, 30x smaller for a 128k vocabulary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from llamaport.errors import ConfigError

SCHEMA_VERSION = 1
FULL_LOGITS_MAX_BYTES = 1 << 20  # per reference; above it, top-k
TOP_K = 64


@dataclass
class Reference:
    """One model's outputs on the eval set. Row i scores ids[i + 1]."""

    lse: torch.Tensor  # [positions] float64
    next_logprob: torch.Tensor  # [positions] float64
    greedy: list[list[int]]  # per prompt
    logits: torch.Tensor | None = None  # [positions, vocab] float32, kind "full"
    topk_logits: torch.Tensor | None = None  # [positions, k] float32, kind "topk"
    topk_ids: torch.Tensor | None = None  # [positions, k] int64

    @property
    def kind(self) -> str:
        return "full" if self.logits is not None else "topk"

    @classmethod
    def from_logits(cls, logits: torch.Tensor, ids: list[int], greedy: list[list[int]],
                    max_full_bytes: int = FULL_LOGITS_MAX_BYTES, top_k: int = TOP_K) -> "Reference":
        rows = logits[:-1].float()
        lse = torch.logsumexp(rows.double(), dim=-1)
        next_logprob = rows.double().gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1) - lse
        if rows.numel() * 4 <= max_full_bytes:
            return cls(lse, next_logprob, greedy, logits=rows.clone())
        values, indices = torch.topk(rows, min(top_k, rows.shape[1]), dim=-1)  # sorted: column 0 is the argmax
        return cls(lse, next_logprob, greedy, topk_logits=values.clone(), topk_ids=indices.clone())

    def top1(self) -> torch.Tensor:
        return self.logits.argmax(-1) if self.kind == "full" else self.topk_ids[:, 0]

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        out = {f"{prefix}.lse": self.lse, f"{prefix}.next_logprob": self.next_logprob}
        for i, g in enumerate(self.greedy):
            out[f"{prefix}.greedy.{i}"] = torch.tensor(g, dtype=torch.int64)
        for name in ("logits", "topk_logits", "topk_ids"):
            if getattr(self, name) is not None:
                out[f"{prefix}.{name}"] = getattr(self, name).contiguous()
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], prefix: str, prompts: int) -> "Reference":
        return cls(lse=t[f"{prefix}.lse"], next_logprob=t[f"{prefix}.next_logprob"],
                   greedy=[t[f"{prefix}.greedy.{i}"].tolist() for i in range(prompts)],
                   logits=t.get(f"{prefix}.logits"), topk_logits=t.get(f"{prefix}.topk_logits"),
                   topk_ids=t.get(f"{prefix}.topk_ids"))


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
