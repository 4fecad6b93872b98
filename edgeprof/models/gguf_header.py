"""A GGUF file's metadata scalars and tensor table, read in milliseconds.

`gguf.GGUFReader` builds a numpy view of every metadata field, the tokenizer's ~50k strings
included, which takes seconds in pure Python; reports and `decide` only need a few scalars
(`general.file_type`) and the tensors' sizes. This reads the header once, skips arrays without
decoding them, and stops before the tensor data. Layout: github.com/ggml-org/ggml docs/gguf.md.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAGIC = b"GGUF"
# value type id -> struct format of one scalar (little-endian)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}  # fmt: skip
_STRING, _ARRAY = 8, 9


FILE_TYPE_KEY = "general.file_type"


def quant_name(file_type: Any) -> str | None:
    """llama.cpp's name for a GGUF's `general.file_type` ("Q4_1", "Q4_K_M", "F32"), as
    `llama_model_ftype_name` writes it; None when the file does not say. The one table of
    these names is gguf's `LlamaFileType`."""
    if file_type is None:
        return None
    from gguf import LlamaFileType

    try:
        name = LlamaFileType(int(file_type)).name
    except (ValueError, TypeError):
        return f"ftype {file_type}"
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def file_quant(path: Path) -> str | None:
    """The quantization llama.cpp will report for this GGUF."""
    return quant_name(read_gguf_header(path).metadata.get(FILE_TYPE_KEY))


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]  # GGUF order: the fastest-varying dimension first
    type_id: int  # ggml type
    n_bytes: int


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict[str, Any]  # scalars and strings; an array appears as its length
    tensors: tuple[GGUFTensor, ...]


class _Cursor:
    def __init__(self, buf: Any) -> None:
        self.buf, self.pos = buf, 0

    def unpack(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.unpack("<Q")
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value(self, type_id: int) -> Any:
        if type_id == _STRING:
            return self.string()
        if type_id == _ARRAY:
            item_type, count = self.unpack("<I"), self.unpack("<Q")
            self.skip_array(item_type, count)
            return count
        fmt = _SCALARS.get(type_id)
        if fmt is None:
            raise ValueError(f"unknown GGUF value type {type_id}")
        return self.unpack(fmt)

    def skip_array(self, item_type: int, count: int) -> None:
        if item_type in _SCALARS:
            self.pos += struct.calcsize(_SCALARS[item_type]) * count
        elif item_type == _STRING:
            for _ in range(count):
                self.pos += 8 + struct.unpack_from("<Q", self.buf, self.pos)[0]
        else:  # arrays of arrays: rare, walked value by value
            for _ in range(count):
                self.value(item_type)


def tensor_bytes(type_id: int, shape: tuple[int, ...]) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
    n = 1
    for d in shape:
        n *= d
    return n // block * type_size


def read_gguf_header(path: Path | str) -> GGUFHeader:
    """The metadata scalars and the tensor table; ValueError for a file that is not a
    little-endian GGUF v2/v3."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != MAGIC:
            raise ValueError(f"{path} is not a GGUF file")
        c = _Cursor(buf)
        c.pos = 4
        version = c.unpack("<I")
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version} (big-endian or unknown)")
        n_tensors, n_kv = c.unpack("<Q"), c.unpack("<Q")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = c.string()
            metadata[key] = c.value(c.unpack("<I"))
        tensors = []
        for _ in range(n_tensors):
            name = c.string()
            n_dims = c.unpack("<I")
            shape = tuple(c.unpack("<Q") for _ in range(n_dims))
            type_id = c.unpack("<I")
            c.unpack("<Q")  # offset into the data section
            tensors.append(GGUFTensor(name, shape, type_id, tensor_bytes(type_id, shape)))
    return GGUFHeader(version, metadata, tuple(tensors))
