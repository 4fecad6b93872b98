"""Model files: finding them, reading a GGUF's header, its chat template and tokenizer,
and the cached ONNX export of a GGUF."""
