"""The device side of a check: everything a device runs, and nothing else. It imports only the standard
library, numpy and the runtime it drives (ExecuTorch, onnxruntime-genai, onnxruntime), never llamaport and
never the build code, and its modules import each other relatively: the host zips this package into one
file (device_runner.pyz, Python's zipapp) that a board with only the runtime's wheel runs as it is. The
device returns raw results (token ids, the scores of the golden positions, timings, the runtime's own
stats); the host scores them against the golden outputs (llamaport.runtime_tests.scoring).
"""
