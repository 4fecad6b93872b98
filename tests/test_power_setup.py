"""The power setup a run records (governor, EPP, platform profile, nvpmodel, AC or battery),
read from fake sysfs trees and fake commands."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edgeprof.measure.power_setup import parse_nvpmodel, power_setup
from tests.fakesys import DENIED, FakeSys, as_unprivileged, make_fakesys


@pytest.fixture
def fs() -> Iterator[FakeSys]:
    yield from make_fakesys()


def test_nothing_readable_nothing_said(fs: FakeSys) -> None:
    assert power_setup(fs.env()) == {}


def test_laptop_governor_epp_profile_on_ac(fs: FakeSys) -> None:
    for n in range(4):
        fs.cpufreq_policy(
            n,
            str(n),
            2_000_000,
            governor="powersave",
            energy_performance_preference="balance_performance",
        )
    fs.write("/sys/firmware/acpi/platform_profile", "balanced")
    fs.power_supply("AC", "Mains", online=1)
    fs.battery("BAT0", "Charging")
    assert power_setup(fs.env()) == {
        "cpu_governor": "powersave",
        "energy_performance_preference": "balance_performance",
        "platform_profile": "balanced",
        "power_source": "ac",
    }


def test_clusters_with_different_governors_are_mixed(fs: FakeSys) -> None:
    fs.cpufreq_policy(0, "0 1 2 3", 1_000_000, governor="schedutil")
    fs.cpufreq_policy(4, "4 5 6 7", 1_000_000, governor="performance")
    fs.cpufreq_policy(10, "10", 1_000_000, governor="conservative")  # number order, not text
    assert power_setup(fs.env())["cpu_governor"] == "mixed: schedutil,performance,conservative"


def test_governor_from_per_cpu_directories(fs: FakeSys) -> None:
    fs.cpu_cpufreq(0, 600_000, governor="ondemand")
    fs.cpu_cpufreq(1, 600_000, governor="ondemand")
    assert power_setup(fs.env()) == {"cpu_governor": "ondemand"}


@pytest.mark.parametrize(
    ("supplies", "source"),
    [
        (
            [("AC", "Mains", {"online": 0}), ("BAT0", "Battery", {"status": "Discharging"})],
            "battery",
        ),
        ([("BAT1", "Battery", {"status": "Discharging"})], "battery"),
        ([("AC", "Mains", {"online": 0}), ("BAT0", "Battery", {"status": "Unknown"})], "battery"),
        ([("ucsi-source-psy-USBC000:001", "USB", {"online": 1})], "ac"),
        ([("BAT0", "Battery", {"status": "Full"})], "ac"),
        ([("BAT0", "Battery", {"status": "Unknown"})], None),  # cannot tell
        ([("AC", "Mains", {"online": 0})], None),  # an adapter unplugged, no battery: no answer
    ],
)
def test_power_source(
    fs: FakeSys, supplies: list[tuple[str, str, dict[str, object]]], source: str | None
) -> None:
    for name, kind, files in supplies:
        fs.power_supply(name, kind, **files)
    assert power_setup(fs.env()).get("power_source") == source


def test_jetson_power_mode_from_nvpmodel(fs: FakeSys) -> None:
    fs.write("/etc/nvpmodel.conf", "< POWER_MODEL ID=0 NAME=MAXN >")
    assert "nvpmodel" not in power_setup(fs.env())  # the file lists modes, not the one in force
    fs.command("nvpmodel", "NV Fan Mode:quiet\nNV Power Mode: 15W\n2\n")
    assert power_setup(fs.env())["nvpmodel"] == "15W (mode 2)"
    fs.command("nvpmodel", "NVPM ERROR: failed to read PARAM\n", rc=1)
    assert "nvpmodel" not in power_setup(fs.env())


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("NV Power Mode: MAXN\n0\n", "MAXN (mode 0)"),
        ("NV Power Mode: MODE_30W_ALL\n", "MODE_30W_ALL"),
        ("no mode here\n", None),
    ],
)
def test_parse_nvpmodel(text: str, mode: str | None) -> None:
    assert parse_nvpmodel(text) == mode


def test_mac_power_source_from_pmset(fs: FakeSys) -> None:
    fs.command(
        "pmset",
        "Now drawing from 'Battery Power'\n -InternalBattery-0 (id=1)\t87%; discharging\n",
    )
    assert power_setup(fs.env()) == {"power_source": "battery"}
    fs.command("pmset", "Now drawing from 'AC Power'\n")
    assert power_setup(fs.env()) == {"power_source": "ac"}


def test_unreadable_directory_is_not_an_error(fs: FakeSys) -> None:
    fs.power_supply("AC", "Mains", online=1)
    fs.cpufreq_policy(0, "0", 1_000_000, governor="performance")
    fs.path("/sys/class/power_supply").chmod(DENIED)
    setup = as_unprivileged(lambda: power_setup(fs.env()))
    assert setup == {"cpu_governor": "performance"}
