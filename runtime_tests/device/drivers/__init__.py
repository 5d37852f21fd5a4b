"""One driver per runtime: a model object with prefill / decode / teacher_forced_logits returning numpy
logits (or, for the LLM runner, its own timed generations). DRIVERS maps runner ids to them."""

DRIVERS = {"executorch-runtime": "executorch_runtime", "executorch-llm-runner": "executorch_llm",
           "onnxruntime-genai": "onnxruntime_genai", "onnxruntime": "onnxruntime_session",
           "tosa-reference-model": "tosa_reference"}
