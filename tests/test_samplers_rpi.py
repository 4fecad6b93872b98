from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from edgeprof.errors import SensorError
from edgeprof.samplers.base import Reading, Sampler, SensorEnv
from edgeprof.samplers.polled import PolledSampler, Push
from edgeprof.samplers.rpi import RpiPmicSampler, parse_pmic
from tests.fakesys import FakeSys, make_fakesys

# Recorded format of `vcgencmd pmic_read_adc` on a Raspberry Pi 5 (abridged).
PMIC = """\
     3V7_WL_SW_A current(0)=0.00390372A
       3V3_SYS_A current(1)=0.05172410A
       1V8_SYS_A current(2)=0.16396580A
      VDD_CORE_A current(7)=0.56259000A
     3V7_WL_SW_V volt(8)=3.70384900V
       3V3_SYS_V volt(9)=3.31050600V
       1V8_SYS_V volt(10)=1.80073200V
      VDD_CORE_V volt(15)=0.76798460V
        EXT5V_V volt(24)=5.12910000V
         BATT_V volt(25)=0.00000000V
"""
EXPECTED_W = (
    0.00390372 * 3.70384900
    + 0.05172410 * 3.31050600
    + 0.16396580 * 1.80073200
    + 0.56259000 * 0.76798460
)


@pytest.fixture
def fs() -> Iterator[FakeSys]:
    yield from make_fakesys()


def test_parse_pairs_current_and_voltage_only() -> None:
    rails = parse_pmic(PMIC)
    assert set(rails) == {"3V7_WL_SW", "3V3_SYS", "1V8_SYS", "VDD_CORE"}  # EXT5V/BATT: volt only
    assert sum(rails.values()) == pytest.approx(EXPECTED_W)


def test_fake_vcgencmd_reads_watts_off_the_sampling_thread(fs: FakeSys) -> None:
    fs.vcgencmd(PMIC)
    (p,) = RpiPmicSampler.probe(fs.env())
    assert p.available and p.domain == "rail" and "partial" in p.reason
    (s,) = RpiPmicSampler.discover(fs.env())
    try:
        deadline = time.monotonic() + 10
        readings: list[Reading] = []
        while not readings and time.monotonic() < deadline:
            readings = s.read()
            time.sleep(0.02)
        assert [(r.sensor, r.metric) for r in readings] == [("rpi:pmic", "power_w")]
        assert readings[0].value == pytest.approx(EXPECTED_W)
        # The fake vcgencmd answers at once, so a new poll may already have landed: either
        # nothing new, or a new reading of the same watts (take() semantics: test below).
        again = s.read()
        assert again == [] or again[0].value == pytest.approx(EXPECTED_W)
    finally:
        s.close()


@pytest.mark.parametrize(
    ("out", "rc", "reason", "fix"),
    [
        ("VCHI initialization failed\n", 255, "VCHI initialization failed", "usermod -aG video"),
        ('error=1 error_msg="Command not registered"\n', 1, "Raspberry Pi 5", ""),
    ],
)
def test_failures_give_reasons(fs: FakeSys, out: str, rc: int, reason: str, fix: str) -> None:
    fs.vcgencmd(out, rc)
    (p,) = RpiPmicSampler.probe(fs.env())
    assert not p.available and reason in p.reason and fix in p.fix
    assert RpiPmicSampler.discover(fs.env()) == []


def test_not_a_pi(fs: FakeSys) -> None:
    (p,) = RpiPmicSampler.probe(fs.env())
    assert not p.available and p.reason.startswith("vcgencmd not found")


class _OneShot(PolledSampler):
    """Pushes one reading, then waits until released: nothing races the assertions."""

    source = "test"

    def __init__(self) -> None:
        super().__init__(sensor="test:x", domain="other", metrics=("power_w",))
        self.pushed = threading.Event()
        self.release = threading.Event()
        self.start_polling()

    def produce(self, push: Push) -> None:
        push([Reading(self.sensor, "power_w", 3.0)])
        self.pushed.set()
        self.release.wait(5)
        raise RuntimeError("tool exited")

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        return []


def test_polled_sampler_hands_each_reading_over_once_then_reports_errors() -> None:
    s = _OneShot()
    try:
        assert s.pushed.wait(5)
        assert s.take() == [Reading("test:x", "power_w", 3.0)]
        assert s.take() == []  # nothing new since the last take
        assert s.read() == []
        s.release.set()
        s._thread.join(5)
        with pytest.raises(SensorError, match=r"^test:x: tool exited$"):
            s.read()
    finally:
        s.close()
    assert s.stopping
