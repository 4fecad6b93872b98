"""How much of a file is in the page cache right now: a cold load (first after boot, or after
the cache was dropped) reads the model from storage, a warm one copies it from memory, and
load times differ by that much.

`cached_fraction(path)` maps the file (nothing is read: mapping does not fault pages in) and
asks the kernel with mincore(2) which of its pages are resident. Linux and macOS; None
elsewhere, for an empty file, or on any failure, never an exception: it is context for a
figure, never worth failing a run for.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import Any

PROT_READ = 0x1
MAP_SHARED = 0x1  # the same on Linux and macOS
WINDOW_BYTES = 256 * 2**20  # mapped a window at a time: 32-bit boards have little address space
_BIT0 = bytes(i & 1 for i in range(256))  # mincore's bit 0 is "resident" on Linux and macOS


def cached_fraction(path: str | os.PathLike[str]) -> float | None:
    """The fraction (0..1) of `path`'s pages resident in the page cache; None where it cannot
    be told (not Linux or macOS, an empty or unreadable file, a call that failed)."""
    pages = _pages(Path(path))
    return None if pages is None or pages[1] == 0 else pages[0] / pages[1]


def model_cached_fraction(path: str | os.PathLike[str]) -> float | None:
    """`cached_fraction` over a model's weights: the file, and an ONNX export's external
    weights beside it (`<name>.data`), page-weighted."""
    files = [Path(path), Path(path).with_name(Path(path).name + ".data")]
    counted = [p for p in (_pages(f) for f in files if f.is_file()) if p is not None]
    total = sum(t for _, t in counted)
    return sum(r for r, _ in counted) / total if total else None


def _pages(path: Path) -> tuple[int, int] | None:
    """(resident pages, pages) of the file; None where it cannot be told."""
    if not (sys.platform.startswith("linux") or sys.platform == "darwin"):
        return None
    try:
        return _count(path)
    except Exception:  # ctypes, OSError, a libc without mincore: unknown, not an error
        return None


def _libc() -> tuple[Any, Any, Any]:
    libc = ctypes.CDLL(None, use_errno=True)
    # mmap64 takes a 64-bit offset even on 32-bit Linux; macOS's off_t is always 64-bit.
    mmap = getattr(libc, "mmap64", None) or libc.mmap
    mmap.restype = ctypes.c_void_p
    mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int64,
    ]
    munmap = libc.munmap
    munmap.restype = ctypes.c_int
    munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    mincore = libc.mincore
    mincore.restype = ctypes.c_int
    mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    return mmap, munmap, mincore


def _count(path: Path) -> tuple[int, int]:
    mmap, munmap, mincore = _libc()
    page = os.sysconf("SC_PAGE_SIZE")
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        resident = total = 0
        for offset in range(0, size, WINDOW_BYTES):  # a multiple of any page size
            length = min(WINDOW_BYTES, size - offset)
            addr = mmap(None, length, PROT_READ, MAP_SHARED, fd, offset)
            if addr is None or addr == ctypes.c_void_p(-1).value:
                raise OSError(ctypes.get_errno(), "mmap failed")
            try:
                n = (length + page - 1) // page
                vec = (ctypes.c_ubyte * n)()
                if mincore(addr, length, vec) != 0:
                    raise OSError(ctypes.get_errno(), "mincore failed")
                resident += bytes(vec).translate(_BIT0).count(1)
                total += n
            finally:
                munmap(addr, length)
        return resident, total
    finally:
        os.close(fd)
