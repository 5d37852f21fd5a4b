"""llama.cpp's statistics (standard errors, KLD median and 99.9th percentile, Δp) and gates judged against the
noise, on synthetic logits computed by hand (no builds)."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from llamaport.errors import CheckFailed
from llamaport.runtime_tests.gates import missed_gates
from llamaport.runtime_tests.golden import Reference
from llamaport.runtime_tests.manifest import GateFailure, Headline
from llamaport.runtime_tests.metrics import compare_to_reference, greedy_summary
from llamaport.runtime_tests.report import Metrics, Summary
from llamaport.targets import Gate
from llamaport.typed import from_dict, to_dict

VOCAB = 50


def _pair(positions=256, noise=0.5, seed=0):
    """(reference logits, candidate logits, ids): the candidate is the reference plus Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(positions, VOCAB, generator=g) * 3.0
    ids = torch.randint(0, VOCAB, (positions,), generator=g).tolist()
    return logits, logits + noise * torch.randn(positions, VOCAB, generator=g), ids


def _scored(logits, other, ids):
    return compare_to_reference(Reference.from_logits(logits, ids, [[1]]), other, ids)


def _nll(logits, ids) -> np.ndarray:
    """Per-position negative log-likelihood of the next token, straight from the logits (row i predicts ids[i+1])."""
    logp = torch.log_softmax(logits[:-1].double(), dim=-1)
    return -logp.gather(1, torch.tensor(ids[1:]).unsqueeze(1)).squeeze(1).numpy()


def test_same_top1_standard_error_is_binomial_93_7_pct_over_255_positions_is_1_5():
    logits, _, ids = _pair(noise=0.0)
    other = logits.clone()
    changed = list(range(0, 256, 16))  # 16 of the 255 scored rows get a new argmax: 239/255 = 93.73 %
    for i in changed:
        other[i, (int(logits[i].argmax()) + 1) % VOCAB] = logits[i].max() + 1.0
    m = _scored(logits, other, ids)
    assert m["positions"] == 255 and m["same_top1_pct"] == pytest.approx(100 * 239 / 255)
    p = 239 / 255
    assert m["same_top1_se_pct"] == pytest.approx(100 * math.sqrt(p * (1 - p) / 254))
    assert round(m["same_top1_se_pct"], 1) == 1.5


def test_kld_standard_error_median_and_99_9th_percentile_match_numpy():
    m = _scored(*_pair())
    kld = np.array(m["kld_per_position"])
    assert kld.size == 255
    assert m["kld_mean"] == pytest.approx(kld.mean())
    assert m["kld_se"] == pytest.approx(np.std(kld) / math.sqrt(kld.size - 1), rel=1e-9)
    assert m["kld_se"] == pytest.approx(np.std(kld, ddof=1) / math.sqrt(kld.size), rel=1e-9)  # the same figure
    assert m["kld_median"] == pytest.approx(np.median(kld), rel=1e-9)
    assert m["kld_p999"] == pytest.approx(np.percentile(kld, 99.9), rel=1e-9)
    assert m["kld_median"] < m["kld_mean"] < m["kld_p99"] <= m["kld_p999"] <= kld.max()


def test_perplexity_ratio_standard_error_is_llama_cpps():
    logits, other, ids = _pair()
    m = _scored(logits, other, ids)
    nll_q, nll_base = _nll(other, ids), _nll(logits, ids)
    n, d = nll_q.size, nll_q - nll_base
    ratio = math.exp(d.mean())
    assert m["ppl_ratio"] == pytest.approx(ratio, rel=1e-9)
    assert m["ppl_ratio_se"] == pytest.approx(ratio * np.std(d) / math.sqrt(n - 1), rel=1e-9)
    # llama.cpp's own form, from its running sums: sqrt(se_q² + se_base² - 2 cov(nll_q, nll_base))
    se_q2 = (np.mean(nll_q ** 2) - nll_q.mean() ** 2) / (n - 1)
    se_b2 = (np.mean(nll_base ** 2) - nll_base.mean() ** 2) / (n - 1)
    cov = (np.mean(nll_q * nll_base) - nll_q.mean() * nll_base.mean()) / (n - 1)
    assert m["ppl_ratio_se"] == pytest.approx(ratio * math.sqrt(se_q2 + se_b2 - 2 * cov), rel=1e-6)


def test_delta_p_mean_and_rms_with_their_standard_errors():
    logits, other, ids = _pair()
    m = _scored(logits, other, ids)
    dp = np.exp(-_nll(other, ids)) - np.exp(-_nll(logits, ids))
    n = dp.size
    assert m["delta_p_mean_pct"] == pytest.approx(100 * dp.mean(), rel=1e-9)
    assert m["delta_p_se_pct"] == pytest.approx(100 * np.std(dp) / math.sqrt(n - 1), rel=1e-9)
    rms = math.sqrt(np.mean(dp ** 2))
    assert m["delta_p_rms_pct"] == pytest.approx(100 * rms, rel=1e-9)
    assert m["delta_p_rms_se_pct"] == pytest.approx(100 * 0.5 / rms * np.std(dp ** 2) / math.sqrt(n - 1), rel=1e-9)


def test_identical_logits_have_zero_spread_and_few_positions_no_standard_error():
    logits, _, ids = _pair()
    same = _scored(logits, logits.clone(), ids)
    assert same["same_top1_se_pct"] == 0.0  # p = 1: a binomial with no spread
    for key in ("kld_se", "ppl_ratio_se", "delta_p_mean_pct", "delta_p_rms_pct", "delta_p_rms_se_pct"):
        assert same[key] == pytest.approx(0.0, abs=1e-9), key  # rounding of the float32 scores only
    few = _scored(*_pair(positions=11))  # 10 scored positions: llama.cpp prints 0, we say unknown
    assert few["positions"] == 10 and few["kld_median"] is not None
    assert all(few[k] is None for k in ("same_top1_se_pct", "kld_se", "ppl_ratio_se", "delta_p_se_pct",
                                        "delta_p_rms_se_pct"))


def test_a_miss_within_two_standard_errors_is_noise_and_beyond_is_not():
    gates = [Gate("same_top1_pct", min=85.0), Gate("kld_mean", max=0.01), Gate("ppl_ratio", max=1.1),
             Gate("logit_sqnr_db", min=30.0)]
    within = SimpleNamespace(same_top1_pct=84.0, same_top1_se_pct=1.5, kld_mean=0.012, kld_se=0.0015,
                             ppl_ratio=1.11, ppl_ratio_se=0.006, logit_sqnr_db=20.0)
    failures = {f.metric: f for f in missed_gates(within, gates)}
    assert failures["same_top1_pct"].standard_error == 1.5 and failures["same_top1_pct"].beyond_noise is False  # 1 < 3
    assert failures["kld_mean"].beyond_noise is False  # 0.002 < 0.003
    assert failures["ppl_ratio"].beyond_noise is False  # 0.01 < 0.012
    assert failures["logit_sqnr_db"].standard_error is None and failures["logit_sqnr_db"].beyond_noise is None
    beyond = SimpleNamespace(same_top1_pct=80.0, same_top1_se_pct=1.5, kld_mean=0.02, kld_se=0.0015,
                             ppl_ratio=1.2, ppl_ratio_se=0.006, logit_sqnr_db=40.0)
    failures = {f.metric: f for f in missed_gates(beyond, gates)}
    assert [failures[k].beyond_noise for k in ("same_top1_pct", "kld_mean", "ppl_ratio")] == [True, True, True]
    # A record measured before standard errors were (an old Headline): the miss is reported, its noise unknown
    old = missed_gates(SimpleNamespace(same_top1_pct=80.0), gates[:1])[0]
    assert old.missed_by == 5.0 and old.standard_error is None and old.beyond_noise is None


def test_records_written_before_the_statistics_still_read():
    logits, other, ids = _pair()
    new = {**_scored(logits, other, ids), **greedy_summary([[1, 2]], [[1, 3]], 2)}
    metrics = from_dict(Metrics, new, "new report")
    assert metrics.kld_se == new["kld_se"] and metrics.headline.same_top1_se_pct == new["same_top1_se_pct"]
    added = ("same_top1_se_pct", "kld_se", "kld_median", "kld_p999", "ppl_ratio_se", "delta_p_mean_pct",
             "delta_p_se_pct", "delta_p_rms_pct", "delta_p_rms_se_pct")
    old = {k: v for k, v in new.items() if k not in added}
    back = from_dict(Metrics, old, "old report")
    assert all(getattr(back, k) is None for k in added) and back.kld_mean == new["kld_mean"]
    assert Headline.of(old).kld_se is None and Headline.of(new).kld_se == new["kld_se"]
    old_headline = {k: v for k, v in to_dict(back.headline).items() if k not in added}
    assert from_dict(Headline, old_headline, "old manifest").ppl_ratio_se is None
    failure = from_dict(GateFailure, {"gate": "kld_mean <= 0.01", "metric": "kld_mean", "value": 0.02,
                                      "missed_by": 0.01}, "old report")
    assert failure.standard_error is None and failure.beyond_noise is None
    # the harness fills Summary from the headline: every statistic travels into the report's summary
    summary = Summary(**vars(metrics.headline), decode_tokens_per_s=10.0, prefill_tokens_per_s=None, ttft_s=None,
                      prompt_tokens=8, load_s=0.1, peak_rss_mb=1.0, artifact_bytes=1,
                      decode_fraction_of_bandwidth_bound=None)
    assert all(getattr(summary, k) == new[k] for k in added)


def test_the_gate_tables_show_the_standard_error_and_the_noise_verdict(capsys):
    import typer

    from llamaport.common_cli import _fail, with_se
    from llamaport.runtime_tests.report_html import _gate_table

    measured = SimpleNamespace(same_top1_pct=84.0, same_top1_se_pct=1.5, kld_mean=0.02, kld_se=0.0015)
    gates = [Gate("same_top1_pct", min=85.0), Gate("kld_mean", max=0.01)]
    failures = missed_gates(measured, gates)
    with pytest.raises(typer.Exit):
        _fail(CheckFailed("misses 2 gates", list(failures)))
    err = capsys.readouterr().err
    assert "within noise" in err and "beyond noise" in err and "0.0015" in err
    report = SimpleNamespace(gates=tuple(g.describe() for g in gates), gate_failures=failures)
    page = _gate_table(report, measured, "value")
    assert "84 ± 1.5" in page and "0.02 ± 0.0015" in page and "within noise" in page and "beyond noise" in page
    assert with_se(93.725, 1.522, ".1f") == "93.7 ± 1.5" and with_se(93.725, None, ".1f") == "93.7"
