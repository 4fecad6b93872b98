"""A soak in words, for `report`: the span, first minute against last, throttling and the
sustained figures (`edgeprof.analysis.soak` computes them), and one plain row per window."""

from __future__ import annotations

from typing import Any

from edgeprof.analysis.soak import MIN_FULL_WINDOWS, FirstLast, Soak, SustainedFigures, Window


def clock(t_s: float) -> str:
    """mm:ss since the soak's start (a sign before it when earlier)."""
    sign = "-" if t_s < 0 else ""
    whole = int(abs(t_s))
    return f"{sign}{whole // 60:02d}:{whole % 60:02d}"


def _pct(value: float | None) -> str:
    return "" if value is None else f" ({value:+.0f}%)"


def _watts(w: Window, mark: bool = True) -> str:
    if w.power_w is None:
        return "power not measured"
    est = mark and w.power_method == "estimated"
    return f"{w.power_w:.1f} W" + (" (estimated)" if est else "")


def _hottest(w: Window) -> str | None:
    return max(w.temp_c_mean, key=lambda s: w.temp_c_mean[s]) if w.temp_c_mean else None


def first_last_line(fl: FirstLast) -> str:
    first, last = fl.first, fl.last
    hot = _hottest(last)
    temp_first = temp_last = ""
    if hot is not None and hot in fl.temp_c_change:  # the sensor hottest at the end
        temp_first = f", {first.temp_c_mean[hot]:.0f} °C"
        temp_last = f", {last.temp_c_mean[hot]:.0f} °C ({fl.temp_c_change[hot]:+.0f} °C, {hot})"
    return (
        f"first minute {first.output_tps:.1f} tok/s, {_watts(first)}{temp_first}; "
        f"last minute {last.output_tps:.1f} tok/s{_pct(fl.output_tps_change_pct)}, "
        # "(estimated)" once, unless the two minutes differ in method
        f"{_watts(last, last.power_method != first.power_method)}"
        f"{_pct(fl.power_w_change_pct)}{temp_last}"
    )


def detail_line(fl: FirstLast) -> str | None:
    parts = []
    if fl.first.decode_tps_median is not None and fl.last.decode_tps_median is not None:
        parts.append(
            f"decode {fl.first.decode_tps_median:.1f} -> {fl.last.decode_tps_median:.1f} tok/s "
            f"per request{_pct(fl.decode_tps_change_pct)}"
        )
    if fl.first.clock_hz is not None and fl.last.clock_hz is not None:
        parts.append(
            f"clock {fl.first.clock_hz / 1e9:.2f} -> {fl.last.clock_hz / 1e9:.2f} GHz"
            f"{_pct(fl.clock_hz_change_pct)} (fastest CPU clock's mean)"
        )
    return "; ".join(parts) or None


def throttle_line(soak: Soak) -> str:
    if not soak.has_throttle_sensor:
        return "throttling not recorded (no throttle sensor on this device)"
    if not soak.events:
        return "never throttled"
    times = ", ".join(clock(e.t_s) + (" (from the start)" if e.from_start else "")
                      for e in soak.events)  # fmt: skip
    reasons = sorted({r for e in soak.events for r in e.reasons})
    n = len(soak.events)
    why = f" ({', '.join(reasons)})" if reasons else ""
    return f"throttled {n} time{'s' if n != 1 else ''} at {times}{why}"


def sustained_line(s: SustainedFigures) -> str:
    energy = ""
    if s.j_per_output_token is not None:
        est = " (estimated)" if s.energy_method and "estimated" in s.energy_method else ""
        energy = f", {s.j_per_output_token:.3g} J/output token{est}"
    decode = "" if s.decode_tps_mean is None else f", decode {s.decode_tps_mean:.1f} tok/s"
    line = (
        f"sustained ({clock(s.t0_s)}-{clock(s.t1_s)}, {s.definition}): {s.output_tps:.1f} tok/s"
        f"{_pct(s.output_tps_change_pct)} against the first minute{decode}{energy}"
    )
    if s.steady is False:
        line += f"; still drifting ({s.drift_pct:+.0f}% across it): a longer soak would settle"
    return line


def soak_lines(soak: Soak) -> list[str]:
    """Plain text lines for `report`: the span, first vs last minute, throttling, sustained."""
    full = soak.full_windows
    tail = [w for w in soak.windows if w.partial and w.duration_s >= 0.5]
    length = soak.windows[-1].t1_s if soak.windows else 0.0
    head = f"soak {clock(length)} in {len(full)} full {soak.window_s:.0f} s windows"
    head += f" + a {tail[0].duration_s:.0f} s tail (not compared)" if tail else ""
    if soak.first_last is None:
        return [head + f": not a soak (fewer than {MIN_FULL_WINDOWS} full windows)"]
    lines = [head, first_last_line(soak.first_last)]
    detail = detail_line(soak.first_last)
    if detail:
        lines.append(detail)
    lines.append(throttle_line(soak))
    if soak.sustained:
        lines.append(sustained_line(soak.sustained))
    return lines


def window_rows(soak: Soak) -> list[dict[str, Any]]:
    """One plain dict per window (JSON output, tables)."""
    return [
        {
            "window": w.index,
            "t0_s": w.t0_s,
            "t1_s": w.t1_s,
            "partial": w.partial,
            "output_tps": w.output_tps,
            "busy_share": w.busy_share,
            "decode_tps_median": w.decode_tps_median,
            "power_w": w.power_w,
            "power_method": w.power_method,
            "temp_c_max": max(w.temp_c_max.values(), default=None),
            "clock_hz": w.clock_hz,
            "freq_hz_min": w.freq_hz_min,
            "throttle_events": w.throttle_events,
        }
        for w in soak.windows
    ]
