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


def test_small_vocab_keeps_every_logit_and_large_keeps_an_adaptive_top_k():
    logits, ids = _logits(), _ids(40, 2000)
    assert Reference.from_logits(logits, ids, [[1]]).kind == "full"
    ref = Reference.from_logits(logits, ids, [[1]], max_full_bytes=39 * 8 * 300)  # a cap of 300 ids a position
    assert ref.kind == "topk" and ref.topk_counts.shape == (39,) and ref.topk_ids.shape == (int(ref.topk_counts.sum()),)
    assert torch.equal(ref.top1(), logits[:-1].argmax(-1))
    p = torch.softmax(logits[:-1].double(), -1)
    kept_mass = 1 - ref.tail_mass
    # each position keeps the fewest ids that reach 1 - 1e-6 of its mass, or the cap, and never fewer than 64
    assert bool(((kept_mass >= 1 - 1e-6) | (ref.topk_counts == 300)).all()) and int(ref.topk_counts.min()) >= 64
    for i in range(39):
        start, k = int(ref.row_starts()[i]), int(ref.topk_counts[i])
        assert torch.equal(ref.topk_ids[start:start + k].long(), torch.topk(p[i], k).indices)  # the k most probable
        tail = torch.ones(2000, dtype=torch.bool)
        tail[ref.topk_ids[start:start + k].long()] = False
        assert float(ref.tail_mass[i]) == pytest.approx(float(p[i][tail].sum()), rel=1e-9)
        assert float(ref.tail_plogp[i]) == pytest.approx(float((p[i][tail] * p[i][tail].log()).sum()), rel=1e-9)
        assert float(ref.tail_pmax[i]) == pytest.approx(float(p[i][tail].max()), rel=1e-9)


def test_identical_logits_score_perfectly():
    logits, ids = _logits(), _ids(40, 2000)
    m = compare_to_reference(Reference.from_logits(logits, ids, [[1]]), logits.clone(), ids)
    assert m["same_top1_pct"] == 100.0 and m["kld_mean"] < 1e-12 and m["max_abs_logit_error"] == 0.0
    assert m["ppl_ratio"] == pytest.approx(1.0, abs=1e-12) and m["logit_sqnr_db"] == SQNR_CEILING_DB
    assert len(m["kld_per_position"]) == 39


@pytest.mark.parametrize("noise", [0.05, 0.3, 1.0])
def test_top_k_kld_interval_holds_the_exact_value_and_perplexity_and_top1_are_exact(noise):
    logits, ids = _logits(), _ids(40, 2000)
    other = logits + noise * torch.randn(logits.shape, generator=torch.Generator().manual_seed(2))
    exact = compare_to_reference(Reference.from_logits(logits, ids, [[1]]), other, ids)
    approx = compare_to_reference(Reference.from_logits(logits, ids, [[1]], max_full_bytes=0), other, ids)
    assert approx["kld_lower_mean"] <= exact["kld_mean"] <= approx["kld_mean"]
    # the lower end (the tail as one bucket) is close where the top-64 hold most of the mass; the upper end
    # must allow for the tail's mass sitting on the device's least likely ids, so it is far above
    assert approx["kld_lower_mean"] >= 0.9 * exact["kld_mean"]
    assert approx["ppl_ratio"] == pytest.approx(exact["ppl_ratio"], rel=1e-9)
    assert approx["same_top1_pct"] == exact["same_top1_pct"]
    assert exact["kld_lower_mean"] == exact["kld_mean"]  # every logit kept: exact, no interval


def _zipf_logits(positions, vocab, alpha, seed):
    """Logits of a heavy (Zipf) tail like a trained model's, each position ranking the vocabulary anew."""
    g = torch.Generator().manual_seed(seed)
    ranks = torch.argsort(torch.rand(positions, vocab, generator=g), dim=1).double() + 1
    return (-alpha * ranks.log() + 0.3 * torch.randn(positions, vocab, generator=g, dtype=torch.float64)).float()


@pytest.mark.parametrize("shape", ["flat", "zipf-1.0", "zipf-1.5", "peaked"])
def test_on_a_32k_vocabulary_the_stored_kld_is_exact_and_a_smaller_golden_bounds_it(shape):
    positions, vocab = 256, 32000
    g = torch.Generator().manual_seed(3)
    logits = {"flat": lambda: torch.randn(positions, vocab, generator=g),  # random weights: near-uniform
              "zipf-1.0": lambda: _zipf_logits(positions, vocab, 1.0, 4),
              "zipf-1.5": lambda: _zipf_logits(positions, vocab, 1.5, 5),
              "peaked": lambda: torch.randn(positions, vocab, generator=g) * 6}[shape]()
    other = logits + 0.2 * torch.randn(logits.shape, generator=g)
    ids = _ids(positions, vocab)
    exact = float((torch.softmax(logits[:-1].double(), -1) * (torch.log_softmax(logits[:-1].double(), -1)
                   - torch.log_softmax(other[:-1].double(), -1))).sum(-1).mean())
    stored = compare_to_reference(Reference.from_logits(logits, ids, [[1]]), other, ids)
    # the default golden keeps every logit of a 32k vocabulary at the build's 255 positions: exact
    assert stored["logits_compared"] == "full" and stored["kld_mean"] == pytest.approx(exact, rel=1e-9)
    # an eighth of the bytes: an adaptive top-k whose interval holds the exact value
    small = compare_to_reference(Reference.from_logits(logits, ids, [[1]], max_full_bytes=4 << 20), other, ids)
    assert small["logits_compared"] == "topk"
    assert small["kld_lower_mean"] <= exact * (1 + 1e-9) and exact <= small["kld_mean"] * (1 + 1e-9)
    if shape == "peaked":  # little mass outside the kept ids: a narrow interval, narrower with more ids kept
        more = compare_to_reference(Reference.from_logits(logits, ids, [[1]], max_full_bytes=16 << 20), other, ids)
        assert more["kld_lower_mean"] <= exact * (1 + 1e-9) and exact <= more["kld_mean"] * (1 + 1e-9)
        assert more["kld_mean"] - more["kld_lower_mean"] < 0.5 * (small["kld_mean"] - small["kld_lower_mean"])
        assert small["kld_mean"] - small["kld_lower_mean"] < 0.25 * exact


def test_a_device_reads_the_kept_ids_the_host_scores_with(tmp_path):
    from llamaport.runtime_tests.device.golden_file import read_golden_inputs
    from llamaport.runtime_tests.scoring import golden_topk_ids

    logits, ids = _logits(vocab=3000), _ids(40, 3000)
    refs = {"full": Reference.from_logits(logits, ids, [[5]], max_full_bytes=0),
            "quantized": Reference.from_logits(logits + 0.1, ids, [[5]], max_full_bytes=39 * 8 * 100)}
    golden = Golden(ids=ids, prompt_texts=["a"], prompts=[[1, 3]], greedy_tokens=1, latency_prompt_text="a b",
                    latency_prompt=[1, 3], eval_source="x.txt", references=refs)
    device = read_golden_inputs(golden.save(tmp_path / "golden.safetensors")).topk_ids
    host = golden_topk_ids(golden)
    for name in refs:
        assert (device[name].ids == host[name].ids).all() and (device[name].counts == host[name].counts).all()
        assert (device[name].spread == host[name].spread).all() and float(device[name].spread.min()) >= 1.0


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
            "quantized": Reference.from_logits(logits + 0.1, ids, [[5, 6], [7, 9]], max_full_bytes=0)}
    golden = Golden(ids=ids, prompt_texts=["a b", "c"], prompts=[[1, 3], [1, 4]], greedy_tokens=2,
                    latency_prompt_text="a b c", latency_prompt=[1, 3, 4], eval_source="x.txt", references=refs,
                    quantization_gap={"kld_mean": 0.5})
    golden.save(tmp_path / "check" / "golden.safetensors")
    back = Golden.load(tmp_path / "check" / "golden.safetensors")
    assert back.ids == ids and back.prompts == golden.prompts and back.quantization_gap == {"kld_mean": 0.5}
    assert back.references["full"].kind == "full" and back.references["quantized"].kind == "topk"
    assert torch.equal(back.references["full"].logits, refs["full"].logits)
    for name in ("topk_ids", "topk_logits", "topk_counts", "tail_mass", "tail_plogp", "tail_pmax"):
        assert torch.equal(getattr(back.references["quantized"], name), getattr(refs["quantized"], name))
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


def test_a_kld_gate_the_golden_interval_straddles_fails_as_undecided():
    from llamaport.runtime_tests.gates import noise_verdict

    straddled = SimpleNamespace(kld_mean=0.02, kld_lower_mean=0.005, kld_se=None)
    (f,) = missed_gates(straddled, [Gate("kld_mean", max=0.01)])
    assert f.value == 0.02 and f.undecided_lower == 0.005
    assert noise_verdict(f) == "undecided: golden bounds it to [0.005, 0.02]"
    beyond = SimpleNamespace(kld_mean=0.02, kld_lower_mean=0.015, kld_se=None)
    assert missed_gates(beyond, [Gate("kld_mean", max=0.01)])[0].undecided_lower is None
