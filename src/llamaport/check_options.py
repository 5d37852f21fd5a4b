"""What `llamaport check` and `sweep` pass on: gate overrides and the check request with its baselines."""

from __future__ import annotations

from pathlib import Path

from llamaport.errors import ConfigError
from llamaport.targets import Gate

# CLI flag -> (gate metric, bound side): every gate metric can be set from the command line.
GATE_FLAGS = {
    "min_top1": ("same_top1_pct", "min"), "max_kld": ("kld_mean", "max"), "max_kld_p99": ("kld_p99", "max"),
    "max_ppl_ratio": ("ppl_ratio", "max"), "min_sqnr": ("logit_sqnr_db", "min"),
    "min_greedy_match": ("greedy_match_pct", "min"), "min_decode_tps": ("decode_tokens_per_s", "min"),
    "min_prefill_tps": ("prefill_tokens_per_s", "min"), "max_ttft": ("ttft_s", "max"),
    "max_bytes": ("artifact_bytes", "max"), "max_rss_mb": ("peak_rss_mb", "max"),
}


def gate_overrides(**given) -> tuple[Gate, ...]:
    """Command-line bounds replace the target profile's bound on the same metric."""
    unknown = set(given) - set(GATE_FLAGS)
    if unknown:
        raise ConfigError(f"unknown gate options {sorted(unknown)}; known: {sorted(GATE_FLAGS)}")
    gates = []
    for k, v in given.items():
        if v is not None:
            try:
                gates.append(Gate(GATE_FLAGS[k][0], **{GATE_FLAGS[k][1]: float(v)}))
            except ConfigError as e:
                raise ConfigError(f"--{k.replace('_', '-')} {v:g}: {e}") from e
    return tuple(gates)


def check_request(bundle: Path, device: str, baseline_model: Path | None, baseline_bundle: Path | None,
                  overrides: tuple[Gate, ...], protocol=None, inventory: Path | None = None):
    from llamaport.compile.sources import detect_format
    from llamaport.runtime_tests.harness import Baseline, CheckRequest, fp32_bundle_baseline
    from llamaport.runtime_tests.latency import LatencyProtocol

    baselines = []
    if baseline_model is not None:
        detect_format(Path(baseline_model))  # refused now, not after the bundle's runners have run
        baselines.append(Baseline("eager-transformers", model=Path(baseline_model).resolve()))
    if baseline_bundle is not None:
        baselines.append(fp32_bundle_baseline(Path(baseline_bundle).resolve()))
    return CheckRequest(bundle=Path(bundle), device=device, gate_overrides=overrides, baselines=tuple(baselines),
                        protocol=protocol or LatencyProtocol(), inventory=Path(inventory) if inventory else None)
