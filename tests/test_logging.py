"""Libraries' INFO log lines stay off the terminal unless --verbose, even when a library calls
`logging.basicConfig(level=INFO)` as it is imported (ONNX Runtime's MatMulNBits quantizer)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import logging, sys
from edgeprof.cli.app import quiet_library_logs
quiet_library_logs(verbose=sys.argv[1] == "1")
import onnxruntime.quantization.matmul_nbits_quantizer  # calls basicConfig(level=INFO)
logging.getLogger("gguf.gguf_writer").info("gguf info line")
logging.getLogger("somelib").warning("a real warning")
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_library_info_lines_only_with_verbose(verbose: bool) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "1" if verbose else "0"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert "a real warning" in done.stderr
    assert ("gguf info line" in done.stderr) is verbose
