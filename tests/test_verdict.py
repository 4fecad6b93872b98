"""decide's paragraph, from hand-made comparisons: who wins, ties, latency limits, modes."""

from __future__ import annotations

from edgeprof.decision import economics as ec
from edgeprof.decision.compare import CloudTarget, Comparison, DeviceTarget, Figure, Latency, Pair
from edgeprof.decision.economics import CloudPrice, DeviceCosts, DevicePerformance, Workload
from edgeprof.decision.orchestrate import TargetRun
from edgeprof.decision.verdict import decision_rows, verdict_paragraph

FAST = Latency(ttft_p50_s=0.1, ttft_p99_s=0.2, e2e_p50_s=1.0, decode_tps=50, peak_rss_bytes=2**28,
               ttft_p95_s=0.18)  # fmt: skip
SLOW = Latency(ttft_p50_s=2.0, ttft_p99_s=4.0, e2e_p50_s=9.0, decode_tps=8, peak_rss_bytes=2**28,
               ttft_p95_s=3.5)  # fmt: skip


def _device(name: str, decode_tps: float, latency: Latency, idle_w: float = 2.0) -> DeviceTarget:
    perf = DevicePerformance(500, decode_tps, 0.5, 0.05, idle_power_w=idle_w)
    return DeviceTarget(name, f"run-{name}", name, "m.gguf", "box", perf, 100, 50, (), latency)


def _cloud(name: str, out_usd_per_m: float, in_usd_per_m: float = 0.1) -> CloudTarget:
    figure = Figure("price_out_usd_per_m", out_usd_per_m, "USD/1M tokens", "assumed", "list")
    price = CloudPrice(in_usd_per_m, out_usd_per_m)
    return CloudTarget(name, "model", price, None, (figure,))


def _comparison(
    devices: list[DeviceTarget],
    clouds: list[CloudTarget],
    costs: DeviceCosts,
    requests_per_day: float = 2000,
) -> Comparison:
    w = Workload(requests_per_day, 100, 50)
    pairs = tuple(
        Pair(d.name, c.name, ec.break_even(w, d.performance, costs, c.price, cloud_name=c.name), ())
        for d in devices
        for c in clouds
    )
    return Comparison("p.db", w, costs, (), tuple(devices), tuple(clouds), pairs)


def _say(c: Comparison, max_ttft_s: float | None = None) -> tuple[str, str]:
    runs = [TargetRun(d.name, d.backend, d.run_id, False, "new") for d in c.devices]
    rows = decision_rows(c, max_ttft_s)
    return verdict_paragraph(
        c, rows, runs=runs, device_name="a test box", energy=["measured by rapl:package-0"],
        max_ttft_s=max_ttft_s, suite="test",
    )  # fmt: skip


DEDICATED = DeviceCosts(80, 3, 0.17)


def test_an_expensive_cloud_loses_to_the_device_and_the_saving_is_stated() -> None:
    c = _comparison([_device("llama.cpp", 40, FAST)], [_cloud("pricey", 60.0)], DEDICATED)
    winner, text = _say(c)
    r = c.pairs[0].result
    assert winner == "llama.cpp"
    saving = r.cloud_cost_per_day_usd - r.device_cost_per_day_usd
    assert f"saving {ec.format_usd(saving)}/day" in text
    assert "breaks even with pricey above" in text and "pays back in" in text
    assert "Energy: measured by rapl:package-0" in text
    assert "too close to call" not in text


def test_a_cheap_cloud_wins_and_a_device_tie_is_called_a_tie() -> None:
    # two backends whose device costs differ by far less than 5 %: capital and idle dominate
    devices = [_device("llama.cpp", 40, FAST), _device("ONNX int4", 41, FAST)]
    c = _comparison(devices, [_cloud("cheap", 0.2)], DEDICATED)
    winner, text = _say(c)
    assert winner == "cheap"
    assert "costs about the same as" in text and "(within 5%)" in text


def test_a_latency_limit_excludes_the_slow_device() -> None:
    devices = [_device("slow", 8, SLOW, idle_w=0.5), _device("fast", 40, FAST, idle_w=3.0)]
    c = _comparison(devices, [_cloud("pricey", 60.0)], DEDICATED)
    assert _say(c)[0] == "slow"  # cheapest: it idles at less
    winner, text = _say(c, max_ttft_s=1.0)
    assert winner == "fast"
    assert "Excluded for a first token slower than 1 s (p95): slow." in text


def test_the_latency_limit_is_a_p95_as_for_capacity() -> None:
    """--max-ttft-s is one requirement: p95 TTFT, for the verdict as for the capacity that a
    throughput curve gives. A device whose p95 meets it but whose slowest request (p99) does
    not is not excluded; one whose p95 misses it is."""
    tail = Latency(ttft_p50_s=0.2, ttft_p99_s=1.4, e2e_p50_s=1.0, decode_tps=50,
                   peak_rss_bytes=2**28, ttft_p95_s=0.9)  # fmt: skip
    c = _comparison([_device("tail", 40, tail)], [_cloud("pricey", 60.0)], DEDICATED)
    assert _say(c, max_ttft_s=1.0)[0] == "tail"
    winner, text = _say(c, max_ttft_s=0.8)
    assert winner == "pricey" and "slower than 0.8 s (p95): tail" in text


def test_nothing_meets_an_impossible_latency_limit_but_unmeasured_clouds() -> None:
    c = _comparison([_device("llama.cpp", 40, SLOW)], [_cloud("cheap", 0.2)], DEDICATED)
    winner, text = _say(c, max_ttft_s=0.5)
    # the cloud's latency was not measured: it is not excluded, and the text says so
    assert winner == "cheap" and "cloud latency was not measured" in text
    assert "cheap is the only option that meets the latency requirement" in text
    assert "Excluded for a first token slower than 0.5 s (p95): llama.cpp." in text


def test_user_device_says_who_pays_what() -> None:
    costs = DeviceCosts(0, 3, 0.17, deployment="user-device", battery_wh=50)
    c = _comparison([_device("llama.cpp", 40, FAST)], [_cloud("pricey", 60.0)], costs)
    winner, text = _say(c)
    assert winner == "llama.cpp"
    assert "the operator pays nothing" in text and "of a battery charge per 100 requests" in text
    assert "256 MiB of RAM" in text


def test_fleet_and_no_break_even_are_stated() -> None:
    slow = _device("llama.cpp", 0.5, FAST)  # 100 s a request: 864 requests/day per device
    c = _comparison([slow], [_cloud("pricey", 60.0)], DEDICATED, requests_per_day=2000)
    _, text = _say(c)
    assert "this volume needs 3 devices, all priced in" in text
    c = _comparison([_device("llama.cpp", 40, FAST)], [_cloud("free", 0.0, 0.0)], DEDICATED)
    _, text = _say(c)
    assert "there is no break-even: a request's electricity alone" in text


def test_a_winner_whose_answers_look_degenerate_is_never_called_one_silently() -> None:
    c = _comparison([_device("llama.cpp", 40, FAST)], [_cloud("pricey", 60.0)], DEDICATED)
    runs = [TargetRun(d.name, d.backend, d.run_id, False, "new") for d in c.devices]
    rows = decision_rows(c, None)
    args = {"runs": runs, "device_name": "a box", "energy": [], "max_ttft_s": None,
            "suite": "test"}  # fmt: skip
    winner, clean = verdict_paragraph(c, rows, **args)  # type: ignore[arg-type]
    assert winner == "llama.cpp" and "WARNING" not in clean
    winner, warned = verdict_paragraph(
        c,
        rows,
        degenerate={"llama.cpp": "12 of 12 answers"},
        **args,  # type: ignore[arg-type]
    )
    assert winner == "llama.cpp"
    assert warned.startswith(
        "WARNING: answers look degenerate for llama.cpp (12 of 12 answers): llama.cpp, the "
        "cheapest below, answered with noise"
    )
    assert warned.endswith(clean)  # the rest of the paragraph as before
