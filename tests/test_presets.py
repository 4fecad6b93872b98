from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from edgeprof.decision.presets import (
    DevicePreset,
    get_preset,
    load_presets,
    matching_presets,
    parse_presets,
    preset_mismatch,
)
from edgeprof.errors import UsageError
from tests.builders import cli
from tests.fakesys import FakeSys, make_fakesys

IDS = [
    "rpi5-4gb", "rpi5-8gb", "rpi5-16gb", "jetson-orin-nano-super", "jetson-agx-orin-64gb",
    "mac-mini-m4", "laptop-midrange",
]  # fmt: skip
FIGURES = ("price_usd", "lifetime_years", "idle_power_w", "busy_power_w", "battery_wh")

PI5_8GB: dict[str, Any] = {
    "label": "Raspberry Pi 5 Model B Rev 1.0",
    "hostname": "pi",
    "cpu_model": "Raspberry Pi 5 Model B Rev 1.0",  # what /proc/cpuinfo's "Model" line says
    "arch": "aarch64",
    "ram_bytes": 8_245_000 * 1024,  # MemTotal of an 8 GB board: a little under 8 GiB
    "accelerators": [],
}
EPYC: dict[str, Any] = {
    "label": "ci-runner",
    "hostname": "ci-runner",
    "cpu_model": "AMD EPYC 7B13",
    "arch": "x86_64",
    "ram_bytes": 16 << 30,
    "accelerators": [],
}


@pytest.fixture
def fs() -> Iterator[FakeSys]:
    yield from make_fakesys()


# -- the bundled file ----------------------------------------------------------------------


def test_bundled_presets_load_with_a_source_and_date_for_every_figure() -> None:
    presets = load_presets()
    assert [p.id for p in presets] == IDS
    for p in presets:
        for name in FIGURES:
            figure = getattr(p, name)
            if figure is None:
                continue
            assert figure.source.startswith(("https://", "edgeprof assumption: ")), (p.id, name)
            assert re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", figure.as_of), (p.id, name)
        assert p.price_usd.value > 0 and p.lifetime_years.value > 0
        assert p.idle_power_w is not None and p.busy_power_w is not None
        assert p.idle_power_w.value < p.busy_power_w.value


def test_bundled_figures() -> None:
    prices = {p.id: p.price_usd.value for p in load_presets()}
    assert prices == {
        "rpi5-4gb": 60, "rpi5-8gb": 80, "rpi5-16gb": 120, "jetson-orin-nano-super": 249,
        "jetson-agx-orin-64gb": 1999, "mac-mini-m4": 599, "laptop-midrange": 900,
    }  # fmt: skip
    mac = get_preset("mac-mini-m4")
    assert mac.idle_power_w is not None and mac.idle_power_w.value == 4
    assert mac.idle_power_w.source == "https://support.apple.com/en-us/103253"
    batteries = {p.id: p.battery_wh.value for p in load_presets() if p.battery_wh is not None}
    assert batteries == {"laptop-midrange": 60}
    laptop = get_preset("laptop-midrange")
    assert all(
        getattr(laptop, n).source.startswith("edgeprof assumption: ") for n in FIGURES
    )  # a made-up laptop has no one to cite


def test_to_dict_round_trips_through_the_parser() -> None:
    presets = load_presets()
    text = json.dumps({"presets": [p.to_dict() for p in presets]})
    assert parse_presets(text, origin="copy.json") == presets
    d = get_preset("rpi5-8gb").to_dict()
    assert d["price_usd"] == {
        "value": 80.0,
        "source": "https://www.raspberrypi.com/news/introducing-raspberry-pi-5/",
        "as_of": "2023-09-28",
    }
    assert d["battery_wh"] is None and d["match"]["ram_gib"] == [6, 10]


def test_unknown_preset_names_the_command_and_the_nearest_id() -> None:
    with pytest.raises(UsageError) as e:
        get_preset("rpi5-8g")
    assert str(e.value) == (
        "unknown device preset 'rpi5-8g'; run `edgeprof devices` to list them "
        "(did you mean 'rpi5-8gb'?)"
    )
    with pytest.raises(UsageError) as e:
        get_preset("zx-spectrum")
    assert (
        str(e.value) == "unknown device preset 'zx-spectrum'; run `edgeprof devices` to list them"
    )


# -- validation of a devices file ----------------------------------------------------------


def _figure(value: Any = 80, source: Any = "https://example.com/p", as_of: Any = "2025-01") -> Any:
    return {"value": value, "source": source, "as_of": as_of}


def _preset(**overrides: Any) -> dict[str, Any]:
    preset: dict[str, Any] = {
        "id": "board-x",
        "name": "Board X",
        "price_usd": _figure(),
        "lifetime_years": _figure(3, "edgeprof assumption: three years"),
        "idle_power_w": _figure(2),
        "busy_power_w": None,
        "battery_wh": None,
        "match": {"label": "Board X"},
    }
    preset.update(overrides)
    return preset


def _file(*presets: dict[str, Any]) -> str:
    return json.dumps({"presets": list(presets)})


def test_a_hand_written_file_parses() -> None:
    (p,) = parse_presets(_file(_preset()), origin="mine.json")
    assert isinstance(p, DevicePreset)
    assert (p.id, p.price_usd.value, p.busy_power_w, p.match) == (
        "board-x", 80.0, None, {"label": "Board X"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"presets": [', "mine.json is not valid JSON (line 1"),
        ('{"devices": []}', 'mine.json needs a non-empty "presets" list'),
        (_file(_preset(price_usd=_figure(source=""))), "preset 'board-x': price_usd has no source"),
        (_file(_preset(price_usd={"value": 80, "as_of": "2025-01"})), "price_usd is not a figure"),
        (_file(_preset(idle_power_w=_figure(as_of="2025-13"))), "as_of '2025-13' is not a date"),
        (_file(_preset(idle_power_w=_figure(as_of="Jan 2025"))), "as_of 'Jan 2025' is not a date"),
        (_file(_preset(idle_power_w=_figure(-1))), "idle_power_w: value -1 must be zero or more"),
        (_file(_preset(price_usd=_figure(0))), "price_usd: value 0 must be above zero"),
        (_file(_preset(lifetime_years=_figure(0))), "lifetime_years: value 0 must be above zero"),
        (_file(_preset(price_usd=_figure("80"))), "price_usd: value '80' is not a finite number"),
        (_file(_preset(price_usd=_figure(True))), "price_usd: value True is not a finite number"),
        (_file(_preset(price_usd=None)), "price_usd is not a figure"),
        (_file(_preset()).replace('"value": 2', '"value": NaN'), "value nan is not a finite"),
        (_file(_preset(tdp_w=_figure())), "has unknown keys ['tdp_w']"),
        (_file({k: v for k, v in _preset().items() if k != "match"}), "lacks ['match']"),
        (_file(_preset(id="Board X")), 'preset #1 needs an "id" of lowercase letters'),
        (_file(_preset(), _preset()), "preset id 'board-x' appears twice"),
        (_file(_preset(match={"label": "Board ("})), "label is not a valid regular expression"),
        (_file(_preset(match={"note": "anything"})), "match needs at least one of label"),
        (_file(_preset(match={"ram_gib": [8, 4]})), "ram_gib must be [min, max] in GiB"),
        (_file(_preset(match={"arch": "x86_64"})), "arch must be a list of architectures"),
        (_file(_preset(match={"socket": "AM5"})), "match has unknown keys ['socket']"),
    ],
)
def test_a_broken_file_says_what_and_where(text: str, expected: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_presets(text, origin="mine.json")
    message = str(e.value)
    assert expected in message
    assert message.startswith("mine.json") and "\n" not in message


# -- recognising this hardware -------------------------------------------------------------


def test_a_pi5_8gb_matches_its_preset_only() -> None:
    assert preset_mismatch(get_preset("rpi5-8gb"), PI5_8GB) is None
    assert [p.id for p in matching_presets(PI5_8GB)] == ["rpi5-8gb"]
    assert preset_mismatch(get_preset("rpi5-4gb"), PI5_8GB) == (
        "this machine is 'Raspberry Pi 5 Model B Rev 1.0' (aarch64) with 7.9 GiB of RAM, "
        "not a Raspberry Pi 5 4 GB: its price and lifetime are used, but speed and energy "
        "are this machine's"
    )


def test_an_x86_server_is_not_a_pi_and_the_sentence_names_its_cpu() -> None:
    assert preset_mismatch(get_preset("rpi5-8gb"), EPYC) == (
        "this machine is 'AMD EPYC 7B13' (x86_64), not a Raspberry Pi 5 8 GB: its price and "
        "lifetime are used, but speed and energy are this machine's"
    )
    # A label that is not the hostname is a board model: named, with the CPU beside it.
    board = {**EPYC, "label": "Supermicro H12SSL", "hostname": "ci"}
    assert preset_mismatch(get_preset("mac-mini-m4"), board) == (
        "this machine is 'Supermicro H12SSL' (AMD EPYC 7B13, x86_64), not a Mac mini M4: its "
        "price and lifetime are used, but speed and energy are this machine's"
    )


def test_other_boards_and_chips() -> None:
    pi500 = {**PI5_8GB, "label": "Raspberry Pi 500 Rev 1.0", "cpu_model": "Cortex-A76"}
    assert preset_mismatch(get_preset("rpi5-8gb"), pi500) is not None  # a keyboard, not a Pi 5
    nano = {
        **PI5_8GB,
        "label": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
        "cpu_model": "ARMv8 Processor rev 1 (v8l)",
        "ram_bytes": 7_620_000_000,
    }
    assert [p.id for p in matching_presets(nano)] == ["jetson-orin-nano-super"]
    agx = {**nano, "label": "Jetson AGX Orin Developer Kit", "ram_bytes": 62 << 30}
    assert [p.id for p in matching_presets(agx)] == ["jetson-agx-orin-64gb"]
    agx32 = {**agx, "ram_bytes": 30 << 30}
    assert "with 30.0 GiB of RAM, not a Jetson AGX Orin 64GB" in str(
        preset_mismatch(get_preset("jetson-agx-orin-64gb"), agx32)
    )
    mac = {"label": "studio.local", "hostname": "studio.local", "cpu_model": "Apple M4",
           "arch": "arm64", "ram_bytes": 16 << 30}  # fmt: skip
    assert [p.id for p in matching_presets(mac)] == ["mac-mini-m4"]
    assert matching_presets({**mac, "cpu_model": "Apple M4 Pro"}) == []


def test_the_laptop_preset_wants_x86_and_a_battery_where_the_fingerprint_says() -> None:
    laptop = get_preset("laptop-midrange")
    assert preset_mismatch(laptop, {**EPYC, "battery_wh": 52.3}) is None
    assert preset_mismatch(laptop, {**EPYC, "arch": "AMD64", "battery_wh": 52.3}) is None
    assert preset_mismatch(laptop, {**EPYC, "battery_wh": None}) == (
        "this machine is 'AMD EPYC 7B13' (x86_64) with no battery, not a mid-range x86 laptop: "
        "its price and lifetime are used, but speed and energy are this machine's"
    )
    assert preset_mismatch(laptop, EPYC) is None  # a stored fingerprint does not say
    assert preset_mismatch(laptop, {**PI5_8GB, "battery_wh": 20.0}) is not None


# -- edgeprof devices ----------------------------------------------------------------------


def _fake_fingerprint(monkeypatch: pytest.MonkeyPatch, device: dict[str, Any]) -> None:
    monkeypatch.setattr("edgeprof.measure.device.fingerprint", lambda sys_root=None: dict(device))


def test_devices_table_with_dates_sources_and_this_machine(
    fs: FakeSys, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_fingerprint(monkeypatch, PI5_8GB)
    done = cli("devices", env={"EDGEPROF_SYS_ROOT": str(fs.root)})
    assert done.exit_code == 0, done.stderr
    text = done.stdout
    for preset_id in IDS:
        assert preset_id in text
    # each figure: its value and footnote, its as-of date under it; the sources below
    assert re.search(r"│ \$80 \[1\] +│", text) and re.search(r"│ 2023-09-28 +│", text)
    assert "[1] https://www.raspberrypi.com/news/introducing-raspberry-pi-5/" in text
    assert "https://support.apple.com/en-us/103253" in text
    assert "edgeprof assumption: a typical mid-range laptop battery" in text
    assert text.rstrip().endswith(
        "this machine ('Raspberry Pi 5 Model B Rev 1.0', Raspberry Pi 5 Model B Rev 1.0, "
        "aarch64, 7.9 GiB RAM, no battery) matches rpi5-8gb"
    )


def test_devices_json_reads_the_battery_for_the_laptop_preset(
    fs: FakeSys, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_fingerprint(monkeypatch, EPYC)
    done = cli("devices", "--json", env={"EDGEPROF_SYS_ROOT": str(fs.root)})
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["this_device_matches"] == []  # no battery: not a laptop

    fs.battery("BAT0", "Charging", energy_full=52_300_000)
    done = cli("devices", "--json", env={"EDGEPROF_SYS_ROOT": str(fs.root)})
    data = json.loads(done.stdout)
    assert data["this_device_matches"] == ["laptop-midrange"]
    assert data["this_device"]["battery_wh"] == 52.3
    assert data["this_device"]["battery_source"] == "/sys/class/power_supply/BAT0/energy_full"
    assert [p["id"] for p in data["presets"]] == IDS
    assert data["presets"][1]["price_usd"]["value"] == 80
    assert all(
        set(p[name]) == {"value", "source", "as_of"}
        for p in data["presets"]
        for name in FIGURES
        if p[name] is not None
    )


def test_devices_on_this_machine() -> None:
    done = cli("devices", "--json")
    assert done.exit_code == 0, done.stderr
    data = json.loads(done.stdout)
    assert len(data["presets"]) == len(IDS)
    assert set(data["this_device_matches"]) <= set(IDS)
    assert data["this_device"]["cpu_model"]
