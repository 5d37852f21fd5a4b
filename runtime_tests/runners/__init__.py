"""Runner id -> dotted entry point. Each takes (bundle folder, Manifest, Golden, LatencyProtocol,
with_accuracy) and returns the fields of a report.RunnerResult: load_s, latency, accuracy (None where the
runtime cannot score logits). Entries are strings: a device imports only the runtime it runs. Which
runners check a bundle is the bundle's own word (manifest.runtime.runners)."""

from __future__ import annotations

_R = "llamaport.runtime_tests.runners"
RUNNERS = {"executorch-runtime": f"{_R}.executorch_runtime:run", "executorch-llm-runner": f"{_R}.executorch_llm:run",
           "onnxruntime-genai": f"{_R}.onnxruntime_genai:run", "onnxruntime": f"{_R}.onnxruntime_session:run"}
