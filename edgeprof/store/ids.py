"""Globally unique, time-ordered ids (ULID) so that merged databases never collide."""

from __future__ import annotations

import math
import os
import time
from datetime import datetime

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(t_ms: int | None = None, low_bits: int | None = None) -> str:
    """26 characters: 48 bits of milliseconds since the epoch, then 80 random bits (or the 80
    bits given, for an id that content decides: `stable_ulid`)."""
    t_ms = int(time.time() * 1000) if t_ms is None else t_ms
    low = int.from_bytes(os.urandom(10), "big") if low_bits is None else low_bits
    value = (max(0, t_ms) << 80) | (low & ((1 << 80) - 1))
    chars = []
    for _ in range(26):
        value, rem = divmod(value, 32)
        chars.append(_CROCKFORD[rem])
    return "".join(reversed(chars))


def stable_ulid(when: datetime, digest_hex: str) -> str:
    """A ULID time-ordered like the run ids, whose 80 random bits are the first 80 of
    `digest_hex`: the same content, the same id (what an import writes twice is one row)."""
    return ulid(math.floor(when.timestamp() * 1000), int(digest_hex[:20], 16))
