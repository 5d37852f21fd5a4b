"""What `llamaport check` and `sweep` pass on: gate overrides and the check request with its baselines."""

from __future__ import annotations

from pathlib import Path

from targets import Gate


def gate_overrides(min_top1=None, max_kld=None, max_ppl_ratio=None, min_sqnr=None, min_decode_tps=None,
                   max_bytes=None) -> tuple[Gate, ...]:
    """Command-line bounds replace the target profile's bound on the same metric."""
    given = [("same_top1_pct", "min", min_top1), ("kld_mean", "max", max_kld), ("ppl_ratio", "max", max_ppl_ratio),
             ("logit_sqnr_db", "min", min_sqnr), ("decode_tokens_per_s", "min", min_decode_tps),
             ("artifact_bytes", "max", max_bytes)]
    return tuple(Gate(metric, **{side: float(v)}) for metric, side, v in given if v is not None)


def check_request(bundle: Path, device: str, baseline_model: Path | None, baseline_bundle: Path | None,
                  overrides: tuple[Gate, ...], decode_tokens: int, warmup: int, repeats: int):
    from runtime_tests.harness import Baseline, CheckRequest, fp32_bundle_baseline
    from runtime_tests.latency import LatencyProtocol

    baselines = []
    if baseline_model is not None:
        baselines.append(Baseline("eager-transformers", "compile.eager_run",
                                  (str(Path(baseline_model).resolve()), "--bundle", str(Path(bundle).resolve()))))
    if baseline_bundle is not None:
        baselines.append(fp32_bundle_baseline(Path(baseline_bundle).resolve()))
    return CheckRequest(bundle=Path(bundle), device=device, gate_overrides=overrides, baselines=tuple(baselines),
                        protocol=LatencyProtocol(decode_tokens=decode_tokens, warmup=warmup, repeats=repeats))
