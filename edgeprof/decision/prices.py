"""Cloud prices: genai-prices' bundled price data (no network), or the user's own figures.

genai-prices ships its price list inside the package, so a price is reproducible from two
things recorded with every run: the package version (in `ModelPrice.source`) and the date the
price was resolved for (`ModelPrice.snapshot_date`; prices change over time and the data holds
their history). Tiered prices (e.g. dearer above 200k input tokens) are reduced to their base
tier: benchmark prompts are far below the thresholds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from edgeprof.errors import PricingError, UsageError


@dataclass(frozen=True)
class ModelPrice:
    provider: str
    model: str
    input_usd_per_m: float
    output_usd_per_m: float
    cached_input_usd_per_m: float | None
    source: str
    snapshot_date: str | None


def genai_prices_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("genai-prices")
    except PackageNotFoundError:  # pragma: no cover - a dependency of edgeprof
        return "unknown"


def _snapshot() -> Any:
    try:
        from genai_prices import data_snapshot
    except ImportError as e:  # pragma: no cover - a dependency of edgeprof
        raise PricingError(
            "genai-prices is not installed; run `pip install genai-prices` "
            "or give prices with `price_in_usd_per_m` and `price_out_usd_per_m`"
        ) from e
    return data_snapshot.get_snapshot()


def _usd(value: Any) -> float | None:
    """A genai-prices price (Decimal, TieredPrices or None) as a float; tiers -> base tier."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return float(value)
    base = getattr(value, "base", None)
    return float(base) if base is not None else None


def _to_model_price(provider: Any, model: Any, when: datetime) -> ModelPrice | None:
    prices = model.get_prices(when)
    in_usd = _usd(getattr(prices, "input_mtok", None))
    out_usd = _usd(getattr(prices, "output_mtok", None))
    if in_usd is None and out_usd is None:
        return None  # not priced per token (images, audio, a subscription): no cost to give
    return ModelPrice(
        provider=provider.id,
        model=model.id,
        input_usd_per_m=in_usd or 0.0,
        output_usd_per_m=out_usd or 0.0,
        cached_input_usd_per_m=_usd(getattr(prices, "cache_read_mtok", None)),
        source=f"genai-prices {genai_prices_version()}",
        snapshot_date=when.date().isoformat(),
    )


def _as_utc(when: datetime | None) -> datetime:
    if when is None:
        return datetime.now(timezone.utc)
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


def _split_ref(model_ref: str, provider: str | None) -> tuple[str, str | None]:
    """'openai:gpt-4o' -> ('gpt-4o', 'openai'), but only when the prefix is a known provider:
    Ollama and Bedrock names ("llama3:8b", "anthropic.claude-v2:1") contain colons too."""
    from genai_prices.data_snapshot import find_provider_by_id

    head, sep, tail = model_ref.partition(":")
    if sep and tail and provider is None and find_provider_by_id(_snapshot().providers, head):
        return tail, head
    return model_ref, provider


def provider_for_url(base_url: str) -> str | None:
    """The genai-prices provider whose API lives at `base_url` (e.g. Groq, Together), if any."""
    import re

    for p in _snapshot().providers:
        if re.match(p.api_pattern, base_url):
            return str(p.id)
    return None


def lookup_price(
    model_ref: str, *, provider: str | None = None, when: datetime | None = None
) -> ModelPrice:
    """The price of `model_ref` ("gpt-4o-mini" or "openai:gpt-4o-mini") in effect at `when`."""
    fix = (
        f"run `edgeprof prices {model_ref.split(':')[-1]}` to see known names, "
        "or give prices with `price_in_usd_per_m` USD_PER_M `price_out_usd_per_m` USD_PER_M"
    )
    if not model_ref.strip():
        raise PricingError(f"no model name to price; {fix}")
    snap = _snapshot()
    model_name, provider = _split_ref(model_ref.strip(), provider)
    try:
        p, m = snap.find_provider_model(model_name, None, provider, None)
    except LookupError as e:
        where = f" for provider {provider!r}" if provider else ""
        raise PricingError(
            f"no price for model {model_name!r}{where} in genai-prices; {fix}"
        ) from e
    price = _to_model_price(p, m, _as_utc(when))
    if price is None:
        raise PricingError(
            f"genai-prices has no per-token price for {p.id}:{m.id}; "
            "give prices with `price_in_usd_per_m` USD_PER_M `price_out_usd_per_m` USD_PER_M"
        )
    return price


def manual_price(
    input_usd_per_m: float,
    output_usd_per_m: float,
    cached_input_usd_per_m: float | None = None,
) -> ModelPrice:
    """Prices the user gives (e.g. --price-in/--price-out, or a historical price list)."""
    for flag, value in (
        ("`price_in_usd_per_m`", input_usd_per_m),
        ("`price_out_usd_per_m`", output_usd_per_m),
        ("cached-input price", cached_input_usd_per_m),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{flag} must be a number of USD per 1M tokens, got {value!r}")
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"{flag} must be a non-negative USD per 1M tokens, got {value!r}")
    return ModelPrice(
        provider="manual",
        model="",
        input_usd_per_m=float(input_usd_per_m),
        output_usd_per_m=float(output_usd_per_m),
        cached_input_usd_per_m=(
            None if cached_input_usd_per_m is None else float(cached_input_usd_per_m)
        ),
        source="user",
        snapshot_date=None,
    )


def request_cost_usd(
    price: ModelPrice, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0
) -> float:
    """Cost of one request. `input_tokens` counts every prompt token, cached ones included (as
    OpenAI's `prompt_tokens` does); cached ones are charged at the cached rate where known."""
    if min(input_tokens, output_tokens, cached_input_tokens) < 0:
        raise ValueError("token counts must be non-negative")
    cached = min(cached_input_tokens, input_tokens)
    cached_rate = (
        price.cached_input_usd_per_m
        if price.cached_input_usd_per_m is not None
        else price.input_usd_per_m
    )
    return (
        (input_tokens - cached) * price.input_usd_per_m
        + cached * cached_rate
        + output_tokens * price.output_usd_per_m
    ) / 1e6


def search_prices(query: str, *, when: datetime | None = None) -> list[ModelPrice]:
    """Every per-token-priced model whose provider, id or name contains `query` (or that
    genai-prices would match to it), exact matches first; "provider:text" narrows to a provider."""
    snap = _snapshot()
    at = _as_utc(when)
    q = query.strip().lower()
    provider_q: str | None = None
    if ":" in q:
        head, _, tail = q.partition(":")
        if any(p.id == head for p in snap.providers):
            provider_q, q = head, tail
    found: list[tuple[int, ModelPrice]] = []
    for p in snap.providers:
        if provider_q is not None and p.id != provider_q:
            continue
        for m in p.models:
            hay = f"{p.id} {m.id} {m.name or ''}".lower()
            exact = bool(q) and (m.id.lower() == q or m.is_match(q))
            if q and not exact and q not in hay:
                continue
            price = _to_model_price(p, m, at)
            if price is not None:
                found.append((0 if exact else 1, price))
    found.sort(key=lambda item: (item[0], item[1].provider, item[1].model))
    return [price for _, price in found]
