"""Runner kind -> function. Each takes (bundle folder, manifest, golden, latency protocol, with_accuracy)
and returns the same result fields: load_s, latency, accuracy (None where the runtime cannot score
logits). Imports are lazy: a device installs only the runtimes it runs."""

from __future__ import annotations


def _executorch_runtime(*args):
    from runtime_tests.runners.executorch_runtime import run
    return run(*args)


def _executorch_llm_runner(*args):
    from runtime_tests.runners.executorch_llm import run
    return run(*args)


def _onnxruntime_genai(*args):
    from runtime_tests.runners.onnxruntime_genai import run
    return run(*args)


def _onnxruntime(*args):
    from runtime_tests.runners.onnxruntime_session import run
    return run(*args)


RUNNERS = {"executorch-runtime": _executorch_runtime, "executorch-llm-runner": _executorch_llm_runner,
           "onnxruntime-genai": _onnxruntime_genai, "onnxruntime": _onnxruntime}
# Which runners check a bundle of each exporter's layout; the first scores accuracy and gives the headline.
RUNNERS_FOR_EXPORTER = {"executorch": ("executorch-runtime", "executorch-llm-runner"),
                        "ort-genai": ("onnxruntime-genai", "onnxruntime"),
                        "optimum-onnx": ("onnxruntime",)}


def step_model(exporter: str, bundle, manifest: dict):
    """The first runner's model object (prefill / decode / teacher_forced_logits), for the build's own gate."""
    if exporter == "executorch":
        from runtime_tests.runners.executorch_runtime import ExecuTorchModel
        return ExecuTorchModel(bundle / manifest["runtime"]["executorch"]["model"])
    if exporter == "ort-genai":
        from runtime_tests.runners.onnxruntime_genai import GenaiModel
        return GenaiModel(bundle, manifest["model"]["context_len"])
    from runtime_tests.runners import onnxruntime_session
    return onnxruntime_session.load(bundle, manifest)
