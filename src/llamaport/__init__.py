"""llamaport: small Llama checkpoints to quantized on-device bundles (ExecuTorch, onnxruntime-genai,
onnxruntime), proven in numbers to still behave like the original.

    import llamaport
    llamaport.build(model, recipe="et-xnnpack-8da4w-g32", out="bundle")
    report = llamaport.check("bundle")

Subpackages: llamaport.targets (devices as data), llamaport.quantize (schemes, recipes, the exporter table),
llamaport.compile (sources, exporters, the build pipeline), llamaport.runtime_tests (the check: bundle
contract, runners, metrics, reports). The CLI is `llamaport` / `python -m llamaport`.
"""

from importlib import metadata

from llamaport.api import build, check, compare, generate, plan, sweep

__version__ = metadata.version("llamaport")
__all__ = ["__version__", "build", "check", "compare", "generate", "plan", "sweep"]
