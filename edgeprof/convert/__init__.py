"""GGUF -> ONNX export of decoders (llama, Qwen 2/3, Phi-3, Gemma 3), for ONNX Runtime runs of
the same weights."""

from __future__ import annotations

from edgeprof.convert.gguf_read import SUPPORTED_ARCHS
from edgeprof.convert.gguf_to_onnx import WEIGHT_FORMATS, ConvertResult, convert_gguf
from edgeprof.convert.sidecar import sidecar_paths
from edgeprof.convert.verify import THRESHOLDS, Verification, verify_export

__all__ = [
    "SUPPORTED_ARCHS",
    "THRESHOLDS",
    "WEIGHT_FORMATS",
    "ConvertResult",
    "Verification",
    "convert_gguf",
    "sidecar_paths",
    "verify_export",
]
