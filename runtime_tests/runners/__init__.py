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


RUNNERS = {"executorch-runtime": _executorch_runtime, "executorch-llm-runner": _executorch_llm_runner}
# Which runners check a bundle of each runtime; the first scores accuracy.
RUNNERS_FOR_RUNTIME = {"executorch": ("executorch-runtime", "executorch-llm-runner")}
