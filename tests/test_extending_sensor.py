"""docs/extending.md "Adding a sensor", run: the example plugin file, loaded as it is, against a
fake /sys, through the same registry, probe, discovery and energy code every built-in uses."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from edgeprof import plugins
from edgeprof.analysis.energy import SensorSeries, window_energy
from edgeprof.samplers import (
    discover,
    probe_all,
    sampler_class,
    sampler_sources,
    unregister_sampler,
)
from tests.fakesys import DENIED, FakeSys, as_unprivileged, make_fakesys

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "sensor_plugin.py"
DOC = ROOT / "docs" / "extending.md"
POWER_FILE = "/sys/class/fancy_meter/power_uw"
S = 1_000_000_000  # ns per second


@pytest.fixture
def fs() -> Iterator[FakeSys]:
    yield from make_fakesys()


def _load_by_path(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)  # runs its register_sampler line
    return module


@pytest.fixture
def plugin() -> Iterator[ModuleType]:
    """The example, imported by path as a plugin module would be; forgotten afterwards."""
    try:
        yield _load_by_path("edgeprof_example_sensor_plugin")
    finally:
        unregister_sampler("fancy")
        sys.modules.pop("edgeprof_example_sensor_plugin", None)


def test_doc_shows_the_example_file_verbatim() -> None:
    assert EXAMPLE.read_text() in DOC.read_text()


def test_registered_after_the_builtins_and_before_the_estimator(plugin: ModuleType) -> None:
    power = sampler_sources("power")
    assert power[-2:] == ["fancy", "estimate"]
    assert power.index("powermetrics") < power.index("fancy")
    assert "fancy" not in sampler_sources("resource")
    assert sampler_class("fancy") is plugin.FancyMeterSampler


def test_probe_says_why_not_and_how_to_fix(plugin: ModuleType, fs: FakeSys) -> None:
    (missing,) = [p for p in probe_all(fs.env()) if p.source == "fancy"]
    assert not missing.available
    assert missing.reason == f"{POWER_FILE} is missing"  # the device's path, not the fake root
    assert missing.fix == "sudo modprobe fancy_meter"

    fs.write(POWER_FILE, 5_000_000, mode=DENIED)
    (denied,) = as_unprivileged(lambda: plugin.FancyMeterSampler.probe(fs.env()))
    assert not denied.available and denied.reason == f"permission denied reading {POWER_FILE}"
    assert denied.fix == f"sudo chmod a+r {POWER_FILE}"

    fs.write(POWER_FILE, 5_000_000)
    (ok,) = [p for p in probe_all(fs.env()) if p.source == "fancy"]
    assert (ok.sensor, ok.available, ok.domain, ok.method) == (
        "fancy:board",
        True,
        "board",
        "measured",
    )


def test_discover_by_name_reads_microwatts_as_watts(plugin: ModuleType, fs: FakeSys) -> None:
    fs.write(POWER_FILE, 7_250_000)
    samplers = discover(fs.env(), ["fancy"])
    assert [s.source for s in samplers] == ["process", "fancy"]  # resource samplers always run
    (meter,) = [s for s in samplers if s.source == "fancy"]
    (reading,) = meter.read()
    assert (reading.sensor, reading.metric, reading.value) == ("fancy:board", "power_w", 7.25)
    # Discovered without being named too: a readable measured source replaces the estimator.
    power = [s.sensor for s in discover(fs.env()) if s.domain != "process"]
    assert power == ["fancy:board"]


def test_readings_attributed_as_whole_board_energy(plugin: ModuleType, fs: FakeSys) -> None:
    """Power rising 2 W -> 4 W over 2 s, sampled every 0.25 s: ∫P dt = 6 J. The board meter
    covers the whole device, so a RAPL package counter on the same machine is not added."""
    fs.write(POWER_FILE, 0)
    fs.rapl_zone("intel-rapl:0", "package-0", 0)
    meter = sampler_class("fancy").discover(fs.env())[0]
    points = []
    for k in range(9):
        t = k / 4
        fs.write(POWER_FILE, round((2 + t) * 1e6))
        points.append((k * S // 4, meter.read()[0].value))
    series = [
        SensorSeries(meter.sensor, meter.domain, "power_w", meter.method, points),
        SensorSeries("rapl:package-0", "package", "energy_j", "measured", [(0, 0.0), (2 * S, 3.0)]),
    ]
    w = window_energy(series, 0, 2 * S)
    assert w.energy_j == pytest.approx(6.0)
    assert (w.method, w.domains, w.sensors) == ("measured", ("board",), ("fancy:board",))
    assert w.avg_power_w == pytest.approx(3.0) and w.peak_power_w == pytest.approx(4.0)
    half = window_energy(series, S, 2 * S)  # the window's edges are interpolated
    assert half.energy_j == pytest.approx(3.5)


def test_installed_plugin_registers_through_its_entry_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What `pip install edgeprof-fancy` does: an entry point in "edgeprof.plugins" naming the
    module; the first registry lookup imports it, and its register_sampler line runs."""
    monkeypatch.syspath_prepend(str(EXAMPLE.parent))
    ep = importlib.metadata.EntryPoint(
        name="fancy", value="sensor_plugin", group=plugins.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: [ep])
    monkeypatch.setenv(plugins.LOAD_PLUGINS_ENV, "fancy")
    monkeypatch.setattr(plugins, "_loaded", False)
    monkeypatch.setattr(plugins, "failures", {})
    try:
        assert "fancy" in sampler_sources("power")
        assert sampler_class("fancy").__module__ == "sensor_plugin"
        assert plugins.failures == {}
    finally:
        unregister_sampler("fancy")
        sys.modules.pop("sensor_plugin", None)
