"""Regression verdicts are judged against the run-to-run spread, not a bare difference."""

from types import SimpleNamespace

from llamaport.runtime_tests.farm.regressions import judge


def _row(decode_runs, kld=1e-3, p99=1.2, error=None):
    runs = sorted(decode_runs)
    summary = ({"error": error} if error else
               {"decode_tokens_per_s": runs[len(runs) // 2], "decode_runs": decode_runs, "kld_mean": kld,
                "token_p99_over_p50": p99})
    return SimpleNamespace(job_key="k", device_id="d", recipe="r", runner="x", passed=not error, summary=summary)


def test_a_clear_slowdown_on_a_quiet_series_is_a_regression():
    v = judge(_row([80, 81, 80.5]), _row([100, 101, 99.5]))
    assert v.flags == ("decode_regression",) and abs(v.decode_change - (80.5 / 100 - 1)) < 1e-9


def test_a_difference_inside_the_spread_is_not():
    assert judge(_row([96, 97, 96.5]), _row([100, 99, 101])).flags == ()


def test_a_noisy_series_is_flagged_as_too_noisy_rather_than_judged():
    assert judge(_row([50, 90, 130]), _row([100, 101, 99])).flags == ("too_noisy",)
    assert judge(_row([80, 81, 80], p99=5.0), _row([100, 101, 99])).flags == ("too_noisy",)


def test_more_kl_divergence_is_a_regression_and_the_first_result_has_nothing_to_compare():
    assert judge(_row([100, 100, 100], kld=2e-3), _row([100, 100, 100], kld=1e-3)).flags == ("kld_regression",)
    assert judge(_row([100, 101]), None).flags == ("first_result",)
    assert judge(_row([100], error="model.pte differs"), None).flags == ("job_error",)
