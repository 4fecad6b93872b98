"""The flags `compare` and `decide` share beyond prices (the quality floor, a cached shared
prefix), and how their output states them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from edgeprof.decision.compare import Comparison

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


SHARED_PREFIX = typer.Option(
    0.0,
    "--shared-prefix-tokens",
    help="Input tokens every request shares (a system prompt): billed at the cloud's "
    "cached-input price, kept in the device's KV cache instead of prefilled again.",
)
CACHE_DEVICE = typer.Option(
    True, "--device-cache/--no-device-cache", help="Whether the device keeps the shared prefix."
)
CACHE_CLOUD = typer.Option(
    True, "--cloud-cache/--no-cloud-cache", help="Whether the cloud bills it as cached input."
)


def caching_lines(c: Comparison) -> list[str]:
    """What caching the shared prefix saved each side, per day, at this volume."""
    prefix = next((f for f in c.assumptions if f.name == "shared_prefix_tokens"), None)
    if prefix is None:
        return []
    from edgeprof.report.formatting import format_usd

    lines = []
    for name in dict.fromkeys(p.device for p in c.pairs):
        saved = next(p.device_caching_saves_usd_per_day for p in c.pairs if p.device == name)
        lines.append(f"caching {prefix.value:g} shared tokens saves {format_usd(saved)}/day on "
                     f"device {name} (prefill skipped)")  # fmt: skip
    for name in dict.fromkeys(p.cloud for p in c.pairs):
        saved = next(p.cloud_caching_saves_usd_per_day for p in c.pairs if p.cloud == name)
        cloud = next(t for t in c.clouds if t.name == name)
        how = ("at its cached-input price" if cloud.price.cached_input_usd_per_m is not None
               else "nothing: no cached-input price listed")  # fmt: skip
        lines.append(f"caching saves {format_usd(saved)}/day on {name} ({how})")
    return lines


def floor_lines(c: Comparison) -> list[str]:
    """What the floor left out and why, and what it assumed of the cloud."""
    if not c.floor.active:
        return []
    lines = [f"quality floor: {c.floor.describe()}; cloud models are taken to meet it "
             "(their quality is not measured here)"]  # fmt: skip
    lines += [f"left out: {name}: {why}" for name, why in c.below_floor]
    return lines
