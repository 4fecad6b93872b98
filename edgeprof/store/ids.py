"""Globally unique, time-ordered ids (ULID) so that merged databases never collide."""

from __future__ import annotations

import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(t_ms: int | None = None) -> str:
    """26 characters: 48 bits of milliseconds since the epoch, then 80 random bits."""
    t_ms = int(time.time() * 1000) if t_ms is None else t_ms
    value = (t_ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, rem = divmod(value, 32)
        chars.append(_CROCKFORD[rem])
    return "".join(reversed(chars))
