"""The quality-floor flags `compare` and `decide` share, and how their output states it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from edgeprof.compare import Comparison

MAX_KLD = typer.Option(
    None,
    "--max-kld",
    help="Leave out device targets whose mean KL divergence from their reference is above "
    "this (nats; from `edgeprof quality`).",
)
MAX_PPL_INCREASE = typer.Option(
    None,
    "--max-ppl-increase",
    help="Leave out device targets whose perplexity is more than this many percent above "
    "their reference's.",
)
MIN_TOP1 = typer.Option(
    None,
    "--min-top1",
    help="Leave out device targets that pick their reference's top token less often than "
    "this share (0-1).",
)


def floor_lines(c: Comparison) -> list[str]:
    """What the floor left out and why, and what it assumed of the cloud."""
    if not c.floor.active:
        return []
    lines = [f"quality floor: {c.floor.describe()}; cloud models are taken to meet it "
             "(their quality is not measured here)"]  # fmt: skip
    lines += [f"left out: {name}: {why}" for name, why in c.below_floor]
    return lines
