"""Cloud prices: genai-prices' figures, the user's overrides, and the cost of one request."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import genai_prices
import pytest
from genai_prices import Usage, calc_price
from genai_prices.data_snapshot import get_snapshot

from edgeprof.decision.prices import (
    ModelPrice,
    lookup_price,
    manual_price,
    request_cost_usd,
    search_prices,
)
from edgeprof.errors import PricingError, UsageError
from tests.builders import cli

M = 1_000_000


def genai_usd_per_m(model: str, **usage: int) -> float:
    return float(calc_price(Usage(**usage), model).total_price)


def test_lookup_matches_genai_prices_own_calculation() -> None:
    p = lookup_price("gpt-4o")
    assert (p.provider, p.model) == ("openai", "gpt-4o")
    assert p.input_usd_per_m == genai_usd_per_m("gpt-4o", input_tokens=M)
    assert p.output_usd_per_m == genai_usd_per_m("gpt-4o", output_tokens=M)
    assert p.cached_input_usd_per_m == genai_usd_per_m(
        "gpt-4o", input_tokens=M, cache_read_tokens=M
    )
    assert p.source == f"genai-prices {genai_prices.__version__}"
    assert p.snapshot_date == datetime.now(timezone.utc).date().isoformat()


def test_provider_prefix_and_keyword_agree() -> None:
    a = lookup_price("openai:gpt-4o-mini")
    b = lookup_price("gpt-4o-mini", provider="openai")
    assert a == b and a.provider == "openai"
    claude = lookup_price("anthropic:claude-sonnet-4-5")
    assert claude.provider == "anthropic" and claude.output_usd_per_m > claude.input_usd_per_m


def test_colons_that_are_not_providers_stay_in_the_name() -> None:
    with pytest.raises(PricingError, match="llama3:8b"):
        lookup_price("llama3:8b")


def test_unknown_model_names_the_fix() -> None:
    with pytest.raises(PricingError) as e:
        lookup_price("my-private-finetune")
    message = str(e.value)
    assert "edgeprof prices" in message and "`price_in_usd_per_m`" in message
    # On the command line the parameter is shown as the flag that sets it.
    from edgeprof.cli.app import cli_message

    assert "--price-in" in cli_message(message)
    with pytest.raises(PricingError, match="provider"):
        lookup_price("gpt-4o", provider="no-such-provider")


def _dated_model() -> tuple[str, str, date]:
    """A model whose price changed on a known day, found in the bundled data."""
    for provider in get_snapshot().providers:
        for model in provider.models:
            if isinstance(model.prices, list) and len(model.prices) == 2:
                first, second = (c.prices.input_mtok for c in model.prices)
                start = getattr(model.prices[1].constraint, "start_date", None)
                plain = isinstance(first, Decimal) and isinstance(second, Decimal)
                if start is not None and plain and first != second:
                    return provider.id, model.id, start
    pytest.fail("no dated price change in the bundled data")


def test_when_selects_the_price_in_effect_that_day() -> None:
    provider, model, start = _dated_model()
    before = datetime.combine(start - timedelta(days=2), datetime.min.time(), timezone.utc)
    after = datetime.combine(start + timedelta(days=2), datetime.min.time(), timezone.utc)
    p_before = lookup_price(model, provider=provider, when=before)
    p_after = lookup_price(model, provider=provider, when=after)
    assert p_before.input_usd_per_m != p_after.input_usd_per_m
    assert p_before.snapshot_date == before.date().isoformat()
    for p, when in ((p_before, before), (p_after, after)):
        calc = calc_price(
            Usage(input_tokens=M), model, provider_id=provider, genai_request_timestamp=when
        )
        assert p.input_usd_per_m == float(calc.total_price)


def test_manual_price_validates() -> None:
    p = manual_price(5, 15)
    assert (p.input_usd_per_m, p.output_usd_per_m, p.cached_input_usd_per_m) == (5.0, 15.0, None)
    assert p.source == "user" and p.snapshot_date is None
    for bad in (-1.0, math.nan, math.inf, True, "5"):
        with pytest.raises(UsageError):
            manual_price(bad, 1.0)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        manual_price(1.0, 1.0, -0.5)


def test_request_cost_by_hand() -> None:
    p = ModelPrice("x", "m", 2.0, 8.0, 0.5, "user", None)
    # 800 uncached × $2 + 200 cached × $0.5 + 500 out × $8, per million
    assert request_cost_usd(p, 1000, 500, 200) == pytest.approx((1600 + 100 + 4000) / M)
    no_cache_rate = ModelPrice("x", "m", 2.0, 8.0, None, "user", None)
    assert request_cost_usd(no_cache_rate, 1000, 500, 200) == pytest.approx((2000 + 4000) / M)
    assert request_cost_usd(p, 0, 0) == 0.0
    with pytest.raises(ValueError):
        request_cost_usd(p, -1, 0)


def test_request_cost_agrees_with_genai_prices() -> None:
    p = lookup_price("gpt-4o")
    ours = request_cost_usd(p, 1234, 567, 234)
    theirs = calc_price(
        Usage(input_tokens=1234, cache_read_tokens=234, output_tokens=567), "gpt-4o"
    ).total_price
    assert Decimal(str(ours)).quantize(Decimal("1e-12")) == theirs.quantize(Decimal("1e-12"))


def _snapshot_matches(provider_id: str, model_id: str, query: str) -> bool:
    for provider in get_snapshot().providers:
        for model in provider.models if provider.id == provider_id else ():
            if model.id == model_id:
                hay = f"{provider.id} {model.id} {model.name or ''}".lower()
                return query in hay or bool(model.is_match(query))
    return False


def test_search() -> None:
    found = search_prices("gpt-4o")
    assert found[0] == lookup_price("gpt-4o")
    # The documented contract: provider, id or name contains the query, or genai-prices
    # itself matches the model to it.
    assert all(_snapshot_matches(p.provider, p.model, "gpt-4o") for p in found)
    assert len({(p.provider, p.model) for p in found}) == len(found)
    anthropic = search_prices("anthropic:claude")
    assert anthropic and {p.provider for p in anthropic} == {"anthropic"}
    assert search_prices("zz-no-such-model-zz") == []


def test_cli_prices_shows_genai_prices_figures() -> None:
    r = cli("prices", "gpt-4o")
    assert r.exit_code == 0, r.output
    p = lookup_price("gpt-4o")
    row = next(line for line in r.stdout.splitlines() if " gpt-4o " in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells == [
        "openai", "gpt-4o",
        f"{p.input_usd_per_m:g}", f"{p.output_usd_per_m:g}", f"{p.cached_input_usd_per_m:g}",
    ]  # fmt: skip
    assert f"genai-prices {genai_prices.__version__}" in r.stdout
    assert str(p.snapshot_date) in r.stdout


def test_cli_prices_json_and_no_match() -> None:
    r = cli("prices", "claude-sonnet-4-5", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert rows[0]["model"] == "claude-sonnet-4-5"
    assert rows[0]["input_usd_per_m"] == lookup_price("claude-sonnet-4-5").input_usd_per_m
    miss = cli("prices", "zz-no-such-model-zz")
    assert miss.exit_code == 1 and "--price-in" in miss.stdout
