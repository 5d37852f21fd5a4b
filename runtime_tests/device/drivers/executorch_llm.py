"""A bundle through ExecuTorch's own LLM runner (TextLLMRunner, the C++ runner inside its Android and iOS
apps). It takes text, stops at EOS and times itself; its stats are returned as the runner's own
`PyTorchObserver {json}` lines (extension/llm/runner/stats.h's format, from Stats.to_json_string), the
same line ExecuTorch's llama_main and benchmark apps print on a phone, so one host parser reads both."""

from __future__ import annotations

from pathlib import Path

from .executorch_runtime import load_llm_kernels

OBSERVER_TAG = "PyTorchObserver "


def generate_timed(bundle: Path, job: dict, prompt_text: str, decode_tokens: int, warmup: int, repeats: int) -> dict:
    load_llm_kernels()
    from executorch.extension.llm.runner import GenerationConfig, TextLLMRunner

    runner = TextLLMRunner(str(Path(bundle) / job["model"]), str(Path(bundle) / job["tokenizer"]))
    config = GenerationConfig(max_new_tokens=decode_tokens + 1, temperature=0.0, echo=False, num_bos=1)
    lines = []
    for _ in range(warmup + repeats):
        stats = []
        # No token callback: its binding converts each piece to str, which fails on a byte-level piece
        # that is half a UTF-8 character; the stats are all this runner is asked for.
        runner.generate(prompt_text, config, token_callback=None, stats_callback=stats.append)
        lines.append(OBSERVER_TAG + stats[-1].to_json_string())
        runner.reset()
    return {"observer_lines": lines[warmup:], "warmup_observer_lines": lines[:warmup]}
