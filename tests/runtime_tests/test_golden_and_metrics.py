"""Golden outputs, accuracy metrics, gates and the Pareto front, on synthetic logits (no builds)."""

from types import SimpleNamespace

import pytest
import torch

from llamaport.errors import ConfigError
from llamaport.runtime_tests.compare import pareto_front
from llamaport.runtime_tests.gates import missed_gates, with_overrides
from llamaport.runtime_tests.golden import Golden, Reference
from llamaport.runtime_tests.metrics import SQNR_CEILING_DB, compare_to_reference, sqnr_db
from llamaport.targets import Gate


def _logits(positions=40, vocab=2000, seed=0, sharpness=4.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(positions, vocab, generator=g) * sharpness


def _ids(positions, vocab, seed=1):
    return torch.randint(0, vocab, (positions,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_small_vocab_keeps_every_logit_and_large_keeps_top_k():
    logits, ids = _logits(), _ids(40, 2000)
    assert Reference.from_logits(logits, ids, [[1]]).kind == "full"
    ref = Reference.from_logits(logits, ids, [[1]], max_full_bytes=1000, top_k=64)
    assert ref.kind == "topk" and ref.topk_ids.shape == (39, 64)
    assert torch.equal(ref.topk_ids[:, 0], logits[:-1].argmax(-1))


def test_identical_logits_score_perfectly():
    logits, ids = _logits(), _ids(40, 2000)
    m = compare_to_reference(Reference.from_logits(logits, ids, [[1]]), logits.clone(), ids)
    assert m["same_top1_pct"] == 100.0 and m["kld_mean"] < 1e-12 and m["max_abs_logit_error"] == 0.0
    assert m["ppl_ratio"] == pytest.approx(1.0, abs=1e-12) and m["logit_sqnr_db"] == SQNR_CEILING_DB
    assert len(m["kld_per_position"]) == 39


@pytest.mark.parametrize("noise", [0.05, 0.3, 1.0])
def test_top_k_kld_is_a_tight_lower_bound_and_perplexity_and_top1_are_exact(noise):
    logits, ids = _logits(), _ids(40, 2000)
    other = logits + noise * torch.randn(logits.shape, generator=torch.Generator().manual_seed(2))
    exact = compare_to_reference(Reference.from_logits(logits, ids, [[1]]), other, ids)
    approx = compare_to_reference(Reference.from_logits(logits, ids, [[1]], max_full_bytes=0, top_k=64), other, ids)
    assert approx["kld_mean"] <= exact["kld_mean"] + 1e-12
    assert approx["kld_mean"] >= 0.9 * exact["kld_mean"]  # the top-64 of these peaked rows hold most of the mass
    assert approx["ppl_ratio"] == pytest.approx(exact["ppl_ratio"], rel=1e-9)
    assert approx["same_top1_pct"] == exact["same_top1_pct"]


def test_sqnr_in_db():
    signal = torch.ones(1000)
    assert sqnr_db(signal, signal + 0.1) == pytest.approx(20.0)
    assert sqnr_db(signal, signal + 0.01) == pytest.approx(40.0)


def test_decode_as_a_fraction_of_the_bandwidth_bound():
    from llamaport.runtime_tests.latency import memory_bound_fraction

    # 30 GB/s over a 1.5 GB model bounds decode at 20 tokens/s; 15 tokens/s is 75 % of it
    assert memory_bound_fraction(15.0, 1_500_000_000, 30.0) == pytest.approx(0.75)
    assert memory_bound_fraction(15.0, 1_500_000_000, None) is None


def test_golden_round_trips_through_the_bundle_file(tmp_path):
    logits, ids = _logits(vocab=300), _ids(40, 300)
    refs = {"full": Reference.from_logits(logits, ids, [[5, 6], [7, 8]]),
            "quantized": Reference.from_logits(logits + 0.1, ids, [[5, 6], [7, 9]], max_full_bytes=0, top_k=16)}
    golden = Golden(ids=ids, prompt_texts=["a b", "c"], prompts=[[1, 3], [1, 4]], greedy_tokens=2,
                    latency_prompt_text="a b c", latency_prompt=[1, 3, 4], eval_source="x.txt", references=refs,
                    quantization_gap={"kld_mean": 0.5})
    golden.save(tmp_path / "check" / "golden.safetensors")
    back = Golden.load(tmp_path / "check" / "golden.safetensors")
    assert back.ids == ids and back.prompts == golden.prompts and back.quantization_gap == {"kld_mean": 0.5}
    assert back.references["full"].kind == "full" and back.references["quantized"].kind == "topk"
    assert torch.equal(back.references["full"].logits, refs["full"].logits)
    assert torch.equal(back.references["quantized"].topk_ids, refs["quantized"].topk_ids)
    assert back.references["quantized"].greedy == [[5, 6], [7, 9]]
    assert back.references["full"].lse.dtype == torch.float64


def test_gates_say_which_and_by_how_much_and_overrides_replace():
    gates = with_overrides((Gate("same_top1_pct", min=85.0), Gate("kld_mean", max=0.1)), [Gate("kld_mean", max=0.001)])
    assert [g.describe() for g in gates] == ["same_top1_pct >= 85.0", "kld_mean <= 0.001"]
    measured = SimpleNamespace(same_top1_pct=80.0, kld_mean=0.004)
    failures = missed_gates(measured, gates)
    assert [(f.metric, round(f.missed_by, 6)) for f in failures] == [("same_top1_pct", 5.0), ("kld_mean", 0.003)]
    with pytest.raises(ConfigError, match="decode_tokens_per_s"):
        missed_gates(measured, [Gate("decode_tokens_per_s", min=1.0)])


def test_pareto_front_keeps_only_undominated_builds():
    def build(name, mb, tps, kld):
        return SimpleNamespace(name=name, artifact_bytes=mb, decode_tokens_per_s=tps, kld_mean=kld)
    rows = [build("fp32", 100, 10, 0.0), build("8w", 40, 9, 1e-5), build("8da4w", 20, 30, 1e-2),
            build("worse", 30, 20, 2e-2), build("8da4w-copy", 20, 30, 1e-2)]
    assert pareto_front(rows) == {"fp32", "8w", "8da4w", "8da4w-copy"}
