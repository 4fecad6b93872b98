"""`decide --hybrid` on hand-made graded runs (tests/route_builders.py): the best cascade, the
break-even over the escalation rate computed by hand, the words of the verdict, the winner
and the frontier chart."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from edgeprof.decision.economics import CloudPrice
from edgeprof.decision.hybrid import (
    HybridTarget,
    break_even_curve,
    cheapest_meeting,
    choose_cascade,
    curve_text,
    hybrid_sentence,
    hybrid_target,
    hybrid_targets,
)
from edgeprof.report.hybrid_chart import frontier_chart, plot_frontier
from edgeprof.routing.load import Replay, load_replay
from edgeprof.routing.replay import RouteOptions
from edgeprof.store import Store
from tests.route_builders import add_pair
from tests.test_route import CLOUD, CLOUD_C, COSTS, FIXED, NET_J, R, _six

# the cloud at 100× the test's usual prices: $100 / $200 per 1M tokens
DEAR = CloudPrice(100.0, 200.0)
FLOOR = RouteOptions(2, None, 0.9)


def _replay(tmp_path: Path, price: CloudPrice | None = None) -> Replay:
    with Store(tmp_path / "p.db") as store:
        device, cloud = add_pair(store, _six())
        return load_replay(store, device, cloud, COSTS, cloud_price=price)


def _target(tmp_path: Path, price: CloudPrice | None = None) -> HybridTarget:
    return hybrid_target(_replay(tmp_path, price), "llama.cpp", "cloud", R, FLOOR)


def test_the_best_cascade_is_the_cheapest_that_meets_the_floor(tmp_path: Path) -> None:
    h = _target(tmp_path)
    assert h.best is not None and h.best.label == "cascade: logprob_mean"
    assert h.best.rule == "logprob_mean < -0.75" and h.meets_floor is True
    # the format check alone passes 4 of 6: below the floor, not chosen though cheaper
    fmt = h.report.result("cascade: format check")
    assert fmt.cost.usd_per_day < h.best.cost.usd_per_day and not fmt.met_floor
    # no floor: the cheapest per passing answer: $1.11 a day / 100 % against the format
    # check's $1.04 / 67 %
    assert fmt.cost.usd_per_day / (4 / 6) > h.best.cost.usd_per_day
    assert choose_cascade(h.report, None) == h.best
    # a floor nothing meets: the cascade that passes most
    none_meet = choose_cascade(h.report, 1.01)
    assert none_meet is not None and none_meet.pass_rate.rate == 1.0


def test_break_even_over_escalation_by_hand(tmp_path: Path) -> None:
    replay = _replay(tmp_path)
    h = hybrid_target(replay, "llama.cpp", "cloud", R, FLOOR)
    # a cascade escalating e breaks even with the cloud alone where one device's fixed cost a
    # day (capital and idle draw) equals what it saves: R × ((1 − e) × cloud $ − energy $)
    cloud = (5 * CLOUD + CLOUD_C) / 6  # the cloud-only mix's mean $ a request
    energy = NET_J * 1e-7
    by_e = {round(p.escalation_rate, 2): p for p in h.curve}
    for e in (0.0, 0.25, 0.5):
        assert by_e[e].requests_per_day == pytest.approx(FIXED / ((1 - e) * cloud - energy))
    low, high = by_e[0.0].requests_per_day, by_e[0.5].requests_per_day
    assert low is not None and high is not None and low < high  # escalating costs volume
    assert by_e[1.0].requests_per_day is None and by_e[1.0].status == "energy_exceeds_cloud"
    # pure: the same from the mix and the pricing alone
    assert h.best is not None
    again = break_even_curve(h.best.mix, replay.pricing, cloud, (0.25,))
    assert again[0].requests_per_day == pytest.approx(by_e[0.25].requests_per_day)
    assert curve_text(h).startswith("break-even requests/day against the cloud alone")
    assert "100%: never" in curve_text(h)


def test_a_cascade_cheaper_than_the_cloud_wins_and_says_how_sure(tmp_path: Path) -> None:
    h = _target(tmp_path, DEAR)
    b = h.best
    assert b is not None and b.pass_rate.rate == 1.0 and b.escalation_rate == pytest.approx(0.5)
    assert h.saving_vs_cloud_usd_per_day == pytest.approx(
        h.cloud_only.cost.usd_per_day - b.cost.usd_per_day
    )
    assert h.saving_vs_cloud_usd_per_day > 0  # type: ignore[operator]
    text = hybrid_sentence(h, 0.9)
    assert "logprob_mean < -0.75" in text and "escalates 50% of requests" in text
    assert "2-fold cross-validation" in text and "cheaper" in text
    n_rules = sum(p.policy == "cascade" for p in h.report.policies)
    assert n_rules > 1 and f"the pick of {n_rules} cascade rules" in text  # it leans high
    # 6 of 6 passed: 100 %, but Wilson's interval over 6 prompts reaches far below 90 %
    assert b.pass_rate.low < 0.9 and "its interval reaches below it" in text
    decision = SimpleNamespace(winner="cloud")
    winner, why = cheapest_meeting([h], decision, 0.9)
    assert winner == h.name == "cascade llama.cpp → cloud" and h.name in why
    # at the test's usual cloud prices the cloud alone is cheaper: where the cloud meets the
    # floor too (5 of 6 pass: 80 %), the winner stays; at 90 % only the cascade meets it
    cheap = _target(tmp_path / "cheap", None)
    assert cheap.saving_vs_cloud_usd_per_day < 0  # type: ignore[operator]
    assert "no cheaper than the cloud alone" in hybrid_sentence(cheap, 0.9)
    assert cheapest_meeting([cheap], decision, 0.8) == ("cloud", "")
    assert cheapest_meeting([cheap], decision, 0.9)[0] == cheap.name
    # another device that meets the floor on its own, priced by the decision below the
    # cascade: it keeps the win (rows hold only the targets that meet the floor)
    assert h.best is not None
    below = h.best.cost.usd_per_day / 2
    row = SimpleNamespace(device_cost_per_day_usd=below, cloud_cost_per_day_usd=None)
    beaten = SimpleNamespace(winner="other device", rows=[row])
    assert cheapest_meeting([h], beaten, 0.9) == ("other device", "")
    row.device_cost_per_day_usd = h.best.cost.usd_per_day * 2
    assert cheapest_meeting([h], beaten, 0.9)[0] == h.name


def test_pairs_that_cannot_be_replayed_are_named(tmp_path: Path) -> None:
    with Store(tmp_path / "p.db") as store:
        device, _ = add_pair(store, _six())
        found, notes = hybrid_targets(store, [("llama.cpp", device)], [("cloud", device)],
                                      COSTS, R, FLOOR)  # fmt: skip
    assert found == [] and len(notes) == 1
    assert notes[0].startswith("hybrid llama.cpp → cloud not evaluated:") and "same run" in notes[0]


def test_the_frontier_holds_no_dominated_point_and_draws(tmp_path: Path) -> None:
    h = _target(tmp_path, DEAR)
    chart = frontier_chart(h.report, 0.9)
    everything = [*chart.policies, *chart.sweep]
    for p in chart.frontier:  # nothing both cheaper and passing more than a frontier point
        assert not any(
            q.usd_per_day < p.usd_per_day and q.pass_rate > p.pass_rate for q in everything
        )
    dominated = [q for q in everything if q not in chart.frontier]
    assert dominated and all(
        any(f.usd_per_day <= q.usd_per_day and f.pass_rate >= q.pass_rate for f in chart.frontier)
        for q in dominated
    )
    assert {p.label for p in chart.policies} >= {"device-only", "cloud-only", "oracle"}
    png = plot_frontier(chart, tmp_path / "f.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
