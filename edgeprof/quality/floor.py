"""A quality floor for the verdict: targets that lose too much against their reference are left
out, with the reason, and a target nobody measured is said to be unmeasured, never taken as
equal. Pure functions over the figures `edgeprof quality` stores."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgeprof.errors import UsageError

NOT_MEASURED = "quality not measured"


@dataclass(frozen=True)
class TargetQuality:
    """The newest quality row for a target, against its reference."""

    kld_mean: float | None
    kld_p99: float | None
    delta_ppl_pct: float | None
    top1_agreement: float | None
    ppl: float | None
    reference_note: str | None
    text_name: str | None
    quality_id: str | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> TargetQuality:
        return cls(
            row.get("kld_mean"), row.get("kld_p99"), row.get("delta_ppl_pct"),
            row.get("top1_agreement"), row.get("ppl"), row.get("reference_note"),
            row.get("text_name"), row.get("id"),
        )  # fmt: skip

    def summary(self) -> str:
        """ "KLD 0.0123, Δ PPL +1.9 %, top-1 96.1 %" """
        parts = []
        if self.kld_mean is not None:
            parts.append(f"KLD {self.kld_mean:.4f}")
        if self.delta_ppl_pct is not None:
            parts.append(f"Δ PPL {self.delta_ppl_pct:+.1f} %")
        if self.top1_agreement is not None:
            parts.append(f"top-1 {self.top1_agreement:.1%}".replace("%", " %"))
        return ", ".join(parts) or NOT_MEASURED


@dataclass(frozen=True)
class QualityFloor:
    max_kld: float | None = None
    max_ppl_increase_pct: float | None = None
    min_top1: float | None = None  # a share, 0-1

    def __post_init__(self) -> None:
        if self.max_kld is not None and self.max_kld < 0:
            raise UsageError(f"`max_kld` must be 0 or more (got {self.max_kld})")
        if self.min_top1 is not None and not 0 <= self.min_top1 <= 1:
            raise UsageError(
                f"`min_top1` is a share between 0 and 1, e.g. 0.9 (got {self.min_top1})"
            )

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_kld, self.max_ppl_increase_pct,
                                           self.min_top1))  # fmt: skip

    def describe(self) -> str:
        """ "KLD ≤ 0.05, Δ PPL ≤ 5 %" """
        parts = []
        if self.max_kld is not None:
            parts.append(f"KLD ≤ {self.max_kld:g}")
        if self.max_ppl_increase_pct is not None:
            parts.append(f"Δ PPL ≤ {self.max_ppl_increase_pct:g} %")
        if self.min_top1 is not None:
            parts.append(f"top-1 ≥ {self.min_top1:.0%}".replace("%", " %"))
        return ", ".join(parts)

    def check(self, q: TargetQuality | None) -> tuple[bool | None, str]:
        """(True, why) when every bound is met, (False, which is missed), (None, ...) when
        there is no floor or the target's quality was never measured."""
        if not self.active:
            return None, q.summary() if q else NOT_MEASURED
        if q is None:
            return None, NOT_MEASURED
        missed = []
        for bound, value, worse, label, fmt in (
            (self.max_kld, q.kld_mean, lambda v, b: v > b, "KLD", "{:.4f} > {:g}"),
            (self.max_ppl_increase_pct, q.delta_ppl_pct, lambda v, b: v > b, "Δ PPL",
             "{:+.1f} % > {:g} %"),
            (self.min_top1, q.top1_agreement, lambda v, b: v < b, "top-1", "{:.1%} < {:.0%}"),
        ):  # fmt: skip
            if bound is None:
                continue
            if value is None:
                return None, f"{NOT_MEASURED} ({label})"
            if worse(value, bound):
                missed.append(f"{label} {fmt.format(value, bound)}")
        return (False, "; ".join(missed)) if missed else (True, q.summary())
