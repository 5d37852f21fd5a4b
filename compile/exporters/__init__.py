"""Exporters, one per file: executorch (.pte), onnx_genai (onnxruntime-genai's builder), onnx_optimum (the
Hugging Face ONNX layout). Which is which, and what each can do, is the capability table
llamaport.quantize.exporters.EXPORTERS; its entry points name the functions here."""
