from __future__ import annotations

import io
import plistlib
import time
from collections.abc import Iterator

import pytest

from edgeprof.samplers.powermetrics import PowermetricsSampler, iter_plists, soc_power_w
from tests.fakesys import FakeSys, make_fakesys

SAMPLE = {
    "timestamp": "2024-11-27T10:00:00Z",
    "processor": {
        "cpu_power": 3200.0,
        "gpu_power": 1500.0,
        "ane_power": 0.0,
        "combined_power": 4700.0,
        "cpu_energy": 320,
        "gpu_energy": 150,
    },
}


@pytest.fixture
def fs() -> Iterator[FakeSys]:
    yield from make_fakesys()


def test_nul_separated_stream_split_across_reads() -> None:
    raw = b"".join(plistlib.dumps(dict(SAMPLE, elapsed_ns=i)) + b"\x00" for i in range(3))
    stream = io.BufferedReader(io.BytesIO(raw), buffer_size=17)  # tiny chunks
    assert [s["elapsed_ns"] for s in iter_plists(stream, chunk=17)] == [0, 1, 2]


def test_power_in_milliwatts_combined_or_sum() -> None:
    assert soc_power_w(SAMPLE) == pytest.approx(4.7)
    parts = {"processor": {"cpu_power": 1000.0, "gpu_power": 250.0}}
    assert soc_power_w(parts) == pytest.approx(1.25)
    assert soc_power_w({"processor": {}}) is None


def test_fake_powermetrics_as_root_streams_power_and_energy(fs: FakeSys) -> None:
    fs.powermetrics([SAMPLE])
    (p,) = PowermetricsSampler.probe_as(fs.env(), as_root=True)
    assert p.available and p.domain == "soc"
    (s,) = PowermetricsSampler.discover(fs.env())  # tests run as root here
    try:
        got: dict[str, float] = {}
        deadline = time.monotonic() + 10
        while got.get("energy_j", 0.0) < 0.9 and time.monotonic() < deadline:
            got.update({r.metric: r.value for r in s.read()})
            time.sleep(0.05)
        assert got["power_w"] == pytest.approx(4.7)
        # Σ 4.7 W × 0.1 s per plist: a multiple of 0.47 J
        n = round(got["energy_j"] / 0.47)
        assert n >= 2 and got["energy_j"] == pytest.approx(0.47 * n)
    finally:
        s.close()


def test_password_prompt_means_unavailable_with_sudoers_fix(fs: FakeSys) -> None:
    fs.powermetrics([SAMPLE])
    fs.sudo_asks_password()
    (p,) = PowermetricsSampler.probe_as(fs.env(), as_root=False)
    assert not p.available and "sudo asks for a password" in p.reason
    assert "NOPASSWD:" in p.fix and str(fs.bin / "powermetrics") in p.fix


def test_not_a_mac(fs: FakeSys) -> None:
    (p,) = PowermetricsSampler.probe_as(fs.env(), as_root=False)
    assert not p.available and "macOS" in p.reason
