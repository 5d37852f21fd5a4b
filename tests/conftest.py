"""Shared fixtures. Every bundle is built once per session, keyed by what went into it, and shared."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from llamaport.compile.pipeline import DEFAULT_MODEL, BuildRequest, run_build
from llamaport.compile.sources import load_checkpoint
from tests import source_writers

TEST_CONTEXT = 256  # enough for the 256-token eval window and 12 + 64 greedy tokens


@pytest.fixture(scope="session")
def default_checkpoint():
    return load_checkpoint(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def sources(tmp_path_factory, default_checkpoint):
    """The bundled model written as every source format llamaport reads."""
    root = tmp_path_factory.mktemp("sources")
    return {
        "hf": DEFAULT_MODEL,
        "meta": source_writers.write_meta_folder(default_checkpoint, root / "meta"),
        "llama2c-legacy": source_writers.write_llama2c_bin(default_checkpoint, root / "l2c0", version=0),
        "llama2c-v1": source_writers.write_llama2c_bin(default_checkpoint, root / "l2c1", version=1),
        "llama2c-pt": source_writers.write_llama2c_pt(default_checkpoint, root / "l2cpt"),
    }


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    """bundle(model_path, recipe) -> Build, built once per session per key and shared by every test."""
    cache: dict = {}
    root = tmp_path_factory.mktemp("bundles")

    def get(model: Path, recipe: str, calibration_text=None):
        key = (str(model), recipe, str(calibration_text))
        if key not in cache:
            out = root / f"b{len(cache)}"
            target = host_target(recipe)
            # NPU programs keep their target's fixed length (32); CPU bundles get room for the eval window
            context = None if target in NPU_TARGETS.values() else TEST_CONTEXT
            cache[key] = run_build(BuildRequest(model=Path(model), recipe=recipe, target=target, out=out,
                                                max_seq_len=context, calibration_text=calibration_text))
        return cache[key]  # a Build: .bundle is the folder, .manifest the typed contract
    return get


NPU_TARGETS = {"ethos-u55": "ethos-u55-128", "ethos-u85": "ethos-u85-256"}


def host_target(recipe: str) -> str:
    """The target a recipe is built for in tests: this host's CPU, or the NPU its backend names."""
    from llamaport.quantize import resolve_recipe
    r = resolve_recipe(recipe)
    if r.backend in NPU_TARGETS:
        return NPU_TARGETS[r.backend]
    return {"executorch": "linux-x86_64-xnnpack", "onnxruntime": "linux-x86_64-ort"}[r.runtime]


def fp32_of(recipe: str) -> str:
    """The fp32 recipe of the same exporter and backend: the baseline a quantized bundle is timed against."""
    from llamaport.quantize import RECIPES, resolve_recipe
    r = resolve_recipe(recipe)
    return next(k for k, v in RECIPES.items() if (v.exporter, v.backend, v.scheme.id) == (r.exporter, r.backend, "fp32"))


@pytest.fixture(scope="session")
def tiny_random_hf(tmp_path_factory):
    """A random-weight Llama 3.2-style HF folder: tied embeddings, GQA, llama3 rope scaling."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny_hf")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, rope_theta=500000.0,
                         rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(DEFAULT_MODEL / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def checked(bundle, tmp_path_factory):
    """checked(model_path, recipe, baselines=False) -> (Report, report folder), checked once per key.
    With baselines, the eager full model and the fp32 bundle of the same model are timed beside it."""
    from llamaport.check_options import check_request
    from llamaport.reports import write_check_report
    from llamaport.runtime_tests.harness import check_bundle
    from llamaport.runtime_tests.latency import LatencyProtocol

    cache: dict = {}
    root = tmp_path_factory.mktemp("reports")

    def get(model: Path, recipe: str, baselines: bool = False):
        key = (str(model), recipe, baselines)
        if key not in cache:
            folder = bundle(model, recipe).bundle
            fp32 = bundle(model, fp32_of(recipe)).bundle if baselines else None
            request = check_request(folder, "local", Path(model) if baselines else None, fp32, (), LatencyProtocol())
            report = check_bundle(request)
            cache[key] = (report, write_check_report(report, root / f"r{len(cache)}"))
        return cache[key]
    return get


# SmolLM-135M's widths (hidden 576, FFN 1536, 9 heads of 64, 3 KV heads): 576 is not a multiple of 128.
SMOLLM_135M = dict(vocab_size=512, hidden_size=576, intermediate_size=1536, num_attention_heads=9,
                   num_key_value_heads=3, max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
                   tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)


@pytest.fixture(scope="session")
def smollm_shaped(tmp_path_factory):
    """A random-weight model with SmolLM-135M's layer widths (2 of its 30 layers, a 512-token vocabulary so
    the bundled tokenizer fits): every linear whose input is 576 wide needs padding at group 128."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("smollm135m_shaped")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**SMOLLM_135M, num_hidden_layers=2)).save_pretrained(folder, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "calibration.txt"):
        shutil.copyfile(DEFAULT_MODEL / name, folder / name)
    return folder
