"""The replay's pure parts (edgeprof/routing): signal directions and thresholds, policies on
one request, pricing a mix by hand, the folds, the objectives, and the held-out rule."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeprof.decision.economics import CloudPrice, DeviceCosts, DevicePerformance
from edgeprof.errors import UsageError
from edgeprof.routing.cases import CloudSide, DeviceAnswer, PromptCase
from edgeprof.routing.families import CascadeFamily, PromptFamily, kinds_by_gain
from edgeprof.routing.holdout import (
    assign_folds,
    choose,
    cross_validate,
    make_protocol,
    stability_warnings,
)
from edgeprof.routing.load import Replay
from edgeprof.routing.outcome import apply
from edgeprof.routing.policies import (
    ByInputLength,
    ByKind,
    Cascade,
    CloudOnly,
    DeviceOnly,
    Oracle,
    describe,
    route,
)
from edgeprof.routing.pricing import Mix, RoutePricing, break_even_escalation, price
from edgeprof.routing.replay import RouteOptions, evaluate
from edgeprof.routing.scoring import score, score_family
from edgeprof.routing.signals import escalates, thresholds

# $365 a year (so $1 a day), 0.36 $/kWh (1e-7 $ a joule), 2 W idle; 10 W busy at 100 tok/s
# prefill and 10 tok/s decode: 0.1 J an input token, 1 J an output token.
COSTS = DeviceCosts(365.0, 1.0, 0.36)
PERF = DevicePerformance(100.0, 10.0, 1.0, 0.1, idle_power_w=2.0)
PRICING = RoutePricing(PERF, COSTS, CloudPrice(1.0, 2.0))
FIXED = 1.0 + 2.0 * 86_400 * 1e-7  # capital and idle draw of one device a day


def case(
    name: str, device: bool, cloud: float = 1.0, lp: float | None = None, *,
    kind: str | None = None, tokens: int = 50, check_failed: bool = False, failed: bool = False,
) -> PromptCase:  # fmt: skip
    answer = DeviceAnswer(f"r-{name}", device, failed, check_failed, tokens, 10,
                          None if failed else 1.5, logprob_mean=lp)  # fmt: skip
    side = CloudSide(1, cloud, 50.0, 10.0, 0.0, None, 0.4)
    return PromptCase(name, name, kind, (answer,), side)


def test_each_signal_escalates_on_its_unsure_side() -> None:
    assert escalates(-2.0, -1.0, "higher") and not escalates(-0.5, -1.0, "higher")
    assert escalates(3.0, 2.0, "lower") and not escalates(1.0, 2.0, "lower")
    entropy = Cascade("entropy_mean", 2.0)
    surest = DeviceAnswer("r", True, False, False, 5, 5, 1.0, entropy_mean=1.0)
    assert route(entropy, case("a", True), surest) == "device"
    assert route(entropy, case("a", True), surest.__class__(**{**surest.__dict__,
                 "entropy_mean": 2.5})) == "escalated"  # fmt: skip
    assert describe(entropy) == "entropy_mean > 2" and describe(Cascade("first_margin", 0.5)) == (
        "first_margin < 0.5"
    )


def test_thresholds_are_midpoints_between_distinct_values_at_most_a_limit() -> None:
    assert thresholds([-1.0, -0.2, -1.0, float("nan"), -0.5]) == (-0.75, -0.35)
    assert thresholds([3.0]) == ()
    many = thresholds(range(1000), limit=11)
    assert len(many) == 11 and many[0] == 0.5 and many[-1] == 998.5


def test_a_cascade_escalates_failed_requests_and_failed_format_checks() -> None:
    c = case("a", False, check_failed=True)
    assert route(Cascade(on_check=True), c, c.device[0]) == "escalated"
    assert route(Cascade("logprob_mean", None, on_check=False), c, c.device[0]) == "device"
    broken = case("b", False, failed=True)
    assert route(Cascade("logprob_mean", None), broken, broken.device[0]) == "escalated"
    assert route(Cascade("logprob_mean", None, escalate_all=True), c, c.device[0]) == "escalated"
    # a request whose figure is not stored is not escalated by it
    assert route(Cascade("logprob_mean", 0.0), c, c.device[0]) == "device"


def test_the_oracle_takes_the_cheapest_side_that_passes() -> None:
    for device, cloud, where in ((True, 1.0, "device"), (False, 1.0, "cloud"),
                                 (False, 0.0, "device"), (True, 0.0, "device")):  # fmt: skip
        c = case("a", device, cloud)
        assert route(Oracle(), c, c.device[0]) == where


def test_prompt_rules_look_at_the_prompt_alone() -> None:
    long, short = case("l", True, tokens=400), case("s", True, tokens=40, kind="qa")
    rule = ByInputLength(100.0)
    assert route(rule, long, long.device[0]) == "cloud"
    assert route(rule, short, short.device[0]) == "device"
    assert route(ByKind(("",)), long, long.device[0]) == "cloud"  # "" stands for no kind
    assert route(ByKind(("",)), short, short.device[0]) == "device"
    assert describe(ByKind(("", "qa"))) == "cloud: (no kind), qa"
    assert describe(ByInputLength(0.0)) == "cloud: every prompt"
    # ... and it is: also a failed request's, which recorded no input token
    never_reached = case("f", False, tokens=0, failed=True)
    assert route(ByInputLength(0.0), never_reached, never_reached.device[0]) == "cloud"
    assert route(ByInputLength(None), never_reached, never_reached.device[0]) == "device"


def test_a_device_share_of_answers_without_tokens_costs_the_devices_not_the_requests() -> None:
    """Failed answers that never reached the model record 0 output tokens; a rule that leaves
    only those on the device is priced (the devices' capital and idle draw), not refused."""
    cost = price(Mix(0.1, 0.0, 0.0, 0.9, 7e-5), PRICING, 2000)
    assert cost.devices_needed == 1
    assert cost.device_usd_per_day == pytest.approx(FIXED, rel=1e-6)
    assert cost.device_energy_usd_per_day == pytest.approx(0.0, abs=1e-9)


def test_a_mix_is_priced_as_the_verdict_prices_the_device_plus_cloud_tokens() -> None:
    # Half the requests on the device (50 in / 10 out: 1.5 busy s, 15 J gross, 12 J net), a
    # quarter of them in the cloud at 7e-5 $ each, at 2,000 requests a day.
    mix = Mix(0.5, 50.0, 10.0, 0.25, 7e-5)
    cost = price(mix, PRICING, 2000)
    fixed = FIXED
    assert cost.devices_needed == 1 and cost.device_requests_per_day == 1000
    assert cost.device_usd_per_day == pytest.approx(fixed + 1000 * 12 * 1e-7)
    assert cost.cloud_usd_per_day == pytest.approx(500 * 7e-5)
    assert cost.usd_per_day == pytest.approx(fixed + 1000 * 12e-7 + 0.035)
    assert cost.energy_j_per_request == pytest.approx(15 * 0.5)
    assert cost.energy_net_j_per_request == pytest.approx(12 * 0.5)
    # 57,600 requests a day per device (86,400 / 1.5 s): 100,000 on the device need two
    assert price(mix, PRICING, 200_000).devices_needed == 2
    # the users' own devices: the operator pays the cloud's share only
    user = RoutePricing(PERF, DeviceCosts(0, 3, 0.36, deployment="user-device"), PRICING.cloud)
    assert price(mix, user, 2000).usd_per_day == pytest.approx(0.035)
    nothing = price(Mix(0.0, 0.0, 0.0, 1.0, 7e-5), PRICING, 2000)
    assert nothing.devices_needed == 0 and nothing.usd_per_day == pytest.approx(0.14)
    assert mix.with_escalation(0.1) == Mix(1.0, 50.0, 10.0, 0.1, 7e-5)


def test_a_cascade_pays_until_it_escalates_the_break_even_share() -> None:
    mix = Mix(1.0, 50.0, 10.0, 0.0, 7e-5)  # the device answers all; escalations cost 7e-5 $
    device_day = 4 * FIXED + 200_000 * 12e-7  # 57,600 requests a device: 4 devices
    share = break_even_escalation(mix, PRICING, 200_000, 7e-5)
    assert share == pytest.approx(1 - device_day / (200_000 * 7e-5))
    at = price(mix.with_escalation(share or 0.0), PRICING, 200_000)
    assert at.usd_per_day == pytest.approx(200_000 * 7e-5)  # the cloud alone's $/day
    assert break_even_escalation(mix, PRICING, 2000, 7e-5) is None  # $1.02 > $0.14 a day


def test_cached_input_is_priced_at_the_cached_price_and_a_flat_cost_as_recorded() -> None:
    side = CloudSide(1, 1.0, 100.0, 10.0, 40.0, 0.003, 0.4)
    cached = RoutePricing(PERF, COSTS, CloudPrice(1.0, 2.0, cached_input_usd_per_m=0.25))
    assert cached.cloud_usd(side) == pytest.approx((60 * 1.0 + 40 * 0.25 + 10 * 2.0) / 1e6)
    listed = RoutePricing(PERF, COSTS, CloudPrice(1.0, 2.0))  # no cached price: full price
    assert listed.cloud_usd(side) == pytest.approx((100 * 1.0 + 10 * 2.0) / 1e6)
    flat = RoutePricing(PERF, COSTS, CloudPrice(cost_per_request_usd=0.001))
    assert flat.cloud_usd(side) == 0.003  # what the run recorded for this prompt
    assert flat.cloud_usd(CloudSide(1, 1.0, 1, 1, 0, None, None)) == 0.001


def test_folds_are_dealt_by_hash_balanced_and_stable() -> None:
    ids = [f"prompt-{i}" for i in range(23)]
    folds = assign_folds(ids, 5)
    shuffled = ids[:]
    random.Random(7).shuffle(shuffled)
    assert assign_folds(shuffled, 5) == folds  # the order prompts come in does not matter
    sizes = sorted(list(folds.values()).count(k) for k in range(5))
    assert sizes == [4, 4, 5, 5, 5]
    import hashlib

    first = min(ids, key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    assert folds[first] == 0


def test_protocols_name_their_objective_and_refuse_bad_settings() -> None:
    assert make_protocol(5, None, None).objective == "cheapest-per-pass"
    assert make_protocol(5, None, 0.8).objective == "cheapest-at-floor"
    with pytest.raises(UsageError, match="needs a `min_pass_rate`"):
        make_protocol(5, "cheapest-at-floor", None)
    with pytest.raises(UsageError, match="share from 0 to 1"):
        make_protocol(5, None, 80)
    with pytest.raises(UsageError, match="2 or more"):
        make_protocol(1, None, None)
    text = make_protocol(4, None, 0.8).describe()
    assert "4-fold cross-validation" in text and "other 3" in text and "at least 80%" in text


def test_objectives_choose_by_their_own_rule() -> None:
    # A device that fails one prompt in four: escalating it costs one cloud request.
    cases = [case("a", True, lp=-0.1), case("b", True, lp=-0.2), case("c", True, lp=-0.3),
             case("d", False, cloud=1.0, lp=-2.0)]  # fmt: skip
    scored = [score(p, cases, PRICING, 2000) for p in
              (Cascade("logprob_mean", None), Cascade("logprob_mean", -1.0),
               Cascade("logprob_mean", None, escalate_all=True), CloudOnly())]  # fmt: skip
    best, met = choose(scored, make_protocol(2, "max-pass", None))
    assert best.policy == CloudOnly() and met  # 100%, and the cheapest at 100% (no device)
    best, _ = choose(scored[:3], make_protocol(2, "max-pass", None))
    assert best.policy == Cascade("logprob_mean", -1.0)  # 100% with one escalation
    best, met = choose(scored[:3], make_protocol(2, None, 0.7))
    assert best.policy == Cascade("logprob_mean", None) and met  # 75% meets 70%, cheapest
    best, met = choose(scored[:1], make_protocol(2, None, 0.9))
    assert best.policy == Cascade("logprob_mean", None) and not met  # none meets: the best
    per_pass = choose(scored[:3], make_protocol(2, "cheapest-per-pass", None))[0]
    usd = {s.policy: s.cost.usd_per_day / s.rate for s in scored[:3]}
    assert per_pass.policy == min(usd, key=lambda p: usd[p])


def test_a_threshold_perfect_on_calibration_is_reported_by_its_held_out_figure() -> None:
    # Fold 0: the signal is right (the unsure answer fails, the cloud fixes it). Fold 1: it is
    # upside down (the unsure answer passes and the cloud gets it wrong; the sure one fails).
    cases = [case("a1", True, 1.0, -0.1), case("a2", False, 1.0, -1.0),
             case("b1", True, 0.0, -0.9), case("b2", False, 1.0, -0.2)]  # fmt: skip
    folds = {"a1": 0, "a2": 0, "b1": 1, "b2": 1}
    protocol = make_protocol(2, "max-pass", None)
    held = cross_validate(CascadeFamily("logprob_mean", False), cases, PRICING, 2000,
                          protocol, folds)  # fmt: skip
    by_fold = {f.fold: f.policy for f in held.folds}
    # chosen on fold 1 (a rule that escalates nothing) and scored on fold 0: 1 of 2 pass;
    # chosen on fold 0, where it is perfect (-0.55 escalates a2 only: 2 of 2), scored on
    # fold 1: b1 is escalated and the cloud fails it, b2 stays and fails: 0 of 2.
    assert by_fold[1] == Cascade("logprob_mean", -0.55) and by_fold[0] == Cascade("logprob_mean")
    assert held.outcome.pass_rate().rate == 0.25
    # On every prompt the best rule escalates a2 alone (3 of 4): the optimistic figure.
    assert held.final.policy == Cascade("logprob_mean", -0.95)
    assert held.final.rate == 0.75
    assert [r.route for r in held.outcome.requests] == ["device", "device", "escalated",
                                                         "device"]  # fmt: skip


def test_route_by_kind_sends_the_kinds_with_the_largest_gap_first() -> None:
    cases = [case("a", True, 1.0, kind="qa"), case("b", False, 1.0, kind="extract"),
             case("c", False, 0.0, kind="math"), case("d", False, 1.0)]  # fmt: skip
    assert kinds_by_gain(cases) == ["", "extract", "math", "qa"]  # ties by name
    family = PromptFamily("kind")
    assert family.candidates(cases)[:3] == [ByKind(()), ByKind(("",)), ByKind(("", "extract"))]
    lengths = PromptFamily("input-tokens").candidates([case("x", True, tokens=10),
                                                       case("y", True, tokens=30)])  # fmt: skip
    assert lengths == [ByInputLength(None), ByInputLength(20.0), ByInputLength(0.0)]


def test_an_outcome_weighs_each_prompt_once_and_adds_the_times_of_an_escalation() -> None:
    twice = PromptCase("p", "p", None, (
        DeviceAnswer("r1", True, False, False, 50, 10, 1.5, logprob_mean=-0.1),
        DeviceAnswer("r2", False, False, False, 50, 10, 1.5, logprob_mean=-2.0),
    ), CloudSide(2, 0.5, 50, 10, 0, None, 0.4))  # fmt: skip
    once = case("q", False, 1.0, -3.0)
    o = apply(Cascade("logprob_mean", -1.0), [twice, once], PRICING)
    # p: r1 passes on the device, r2 is escalated and the cloud passes half the time: 0.75;
    # q escalated, the cloud passes: 1. Over two prompts: 1.75 / 2.
    assert o.pass_rate().passed == pytest.approx(1.75) and o.pass_rate().n == 2
    assert o.cloud_share == pytest.approx((0.5 + 1) / 2) and o.device_share == 1.0
    assert sorted(r.latency_s for r in o.requests) == [1.5, 1.9, 1.9]  # type: ignore[type-var]
    assert apply(DeviceOnly(), [twice], PRICING).pass_rate().rate == 0.5


def test_a_replay_with_a_request_that_never_reached_the_model() -> None:
    """A failed device request that recorded 0 tokens and no latency: every policy is priced
    (none refused for want of tokens), and the latency percentiles say they leave it out."""
    answered = (case(f"p{i}", i % 2 == 0, lp=-0.1 - i / 50, tokens=10 + i) for i in range(30))
    cases = (case("f", False, tokens=0, failed=True), *answered)
    replay = Replay("d", "c", "s", "dev", "cloud", cases, PRICING, (), ("logprob_mean",),
                    (), (), (), (), ())  # fmt: skip
    report = evaluate(replay, 2000, RouteOptions(folds=3))
    assert all(p.cost.usd_per_day > 0 for p in report.policies)
    assert any("1 device request(s) failed and have no measured latency" in n
               for n in report.notes)  # fmt: skip


def test_too_few_prompts_or_failures_are_said() -> None:
    cases = [case(str(i), i % 5 != 0) for i in range(40)]
    lines = stability_warnings(cases, make_protocol(5, None, None))
    assert len(lines) == 2 and "only 40 prompts (8 a fold)" in lines[0]
    assert "the device fails only 8 of the prompts" in lines[1]
    assert stability_warnings([case(str(i), i % 2 == 0) for i in range(100)],
                              make_protocol(5, None, None)) == []  # fmt: skip


_answers = st.tuples(
    st.booleans(), st.booleans(), st.booleans(), st.sampled_from([10, 50, 200]),
    st.one_of(st.none(), st.sampled_from([-2.0, -1.0, -0.5, -0.1])),
    st.one_of(st.none(), st.sampled_from([0.1, 1.0, 2.5])),
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.lists(_answers, min_size=1, max_size=3),
                          st.sampled_from([0.0, 0.5, 1.0])), min_size=1, max_size=8))  # fmt: skip
def test_the_one_pass_sweep_agrees_with_replaying_each_candidate(
    raw: list[tuple[list[tuple[bool, bool, bool, int, float | None, float | None]], float]],
) -> None:
    cases = []
    for i, (answers, cloud) in enumerate(raw):
        device = tuple(
            DeviceAnswer(f"r{i}-{j}", ok, failed, check, tokens, 10, 1.0, logprob_mean=lp,
                         entropy_mean=h)
            for j, (ok, failed, check, tokens, lp, h) in enumerate(answers)
        )  # fmt: skip
        cost = CloudSide(1, cloud, 40.0 + i, 10.0, 0.0, None, 0.4)
        cases.append(PromptCase(f"p{i}", f"p{i}", None, device, cost))
    for family in (CascadeFamily("logprob_mean", False), CascadeFamily("entropy_mean", True),
                   PromptFamily("input-tokens")):  # fmt: skip
        fast = score_family(family, cases, PRICING, 2000)
        slow = [score(p, cases, PRICING, 2000) for p in family.candidates(cases)]
        assert [s.policy for s in fast] == [s.policy for s in slow]
        for a, b in zip(fast, slow, strict=True):
            assert a.rate == pytest.approx(b.rate) and a.cloud_share == pytest.approx(b.cloud_share)
            assert a.cost.usd_per_day == pytest.approx(b.cost.usd_per_day)
            assert a.cost.devices_needed == b.cost.devices_needed
            assert a.mix.device_share == pytest.approx(b.mix.device_share)
