"""CPU power *estimated* from load, for machines without a power sensor.

codecarbon's load model: P = TDP × (0.1 + 0.9 × load³), load = system CPU use in [0, 1].
Every figure it produces is labelled `estimated` and names the TDP it assumed and where that
came from (`--tdp-w`, or the default below), so an estimate is never mistaken for a reading.
"""

from __future__ import annotations

from typing import ClassVar

from edgeprof.samplers.base import CpuLoad, ProbeResult, Reading, Sampler, SensorEnv

# codecarbon's figure for an unknown CPU; pass --tdp-w with your CPU's TDP for a better guess.
DEFAULT_TDP_W = 85.0


def estimated_power_w(tdp_w: float, load_fraction: float) -> float:
    load = min(1.0, max(0.0, load_fraction))
    return tdp_w * (0.1 + 0.9 * load**3)


class EstimatedCpuSampler(Sampler):
    source: ClassVar[str] = "estimate"

    def __init__(self, tdp_w: float | None = None) -> None:
        self.tdp_w = tdp_w if tdp_w is not None else DEFAULT_TDP_W
        origin = "--tdp-w" if tdp_w is not None else "default for an unknown CPU; set --tdp-w"
        super().__init__(
            sensor="estimate:cpu",
            domain="package",
            method="estimated",
            detail=(
                f"estimated: TDP {self.tdp_w:g} W ({origin}) × (0.1 + 0.9 × load³), "
                "codecarbon's load model"
            ),
            metrics=("power_w",),
        )
        self._load = CpuLoad()

    @classmethod
    def discover(cls, env: SensorEnv) -> list[Sampler]:
        return [cls(env.tdp_w)]

    @classmethod
    def probe(cls, env: SensorEnv) -> list[ProbeResult]:
        s = cls(env.tdp_w)
        return [ProbeResult(cls.source, s.sensor, True, s.domain, "estimated", reason=s.detail)]

    def read(self) -> list[Reading]:
        return [
            Reading(self.sensor, "power_w", estimated_power_w(self.tdp_w, self._load.fraction()))
        ]
