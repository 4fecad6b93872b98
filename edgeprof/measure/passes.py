"""How many passes over the prompt suite a run makes: a fixed count (`--repetitions`), until a
soak's time is up (`--duration`), or until the 95 % intervals of its headline figures are as
narrow as asked (`--target-ci`, bounded by `--max-repetitions`), as pyperf and llama-bench
repeat until a figure is stable rather than a fixed number of times."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from edgeprof.analysis.metrics import confidence_interval
from edgeprof.analysis.summary import repetition_figures
from edgeprof.errors import UsageError

# The figures `--target-ci` narrows: speed, and energy per token where the run has energy.
TARGET_FIGURES = ("decode_tps", "j_per_output_token")
# A soak's passes are bounded only by the clock; this keeps a zero-length suite from spinning.
MAX_SOAK_REPETITIONS = 100_000


@dataclass
class Passes:
    """Decides, pass by pass, whether the run goes on; `observe` feeds it each request row."""

    repetitions: int  # the count; with `target_ci`, the least
    duration_s: float | None = None
    target_ci: float | None = None  # relative half-width of the 95 % interval: 0.03 = 3 %
    max_repetitions: int = 30
    rows: list[dict[str, Any]] = field(default_factory=list)
    stopped_by: str | None = None  # "repetitions" | "duration" | "target-ci" | "max-repetitions"

    def __post_init__(self) -> None:
        if self.duration_s is not None and self.target_ci is not None:
            raise UsageError("give --duration (a soak) or --target-ci, not both")
        if self.duration_s is not None and not 0 < self.duration_s <= 7 * 86_400:
            raise UsageError("`duration` must be above 0 and at most 7 days, e.g. 10m or 90s")
        if self.target_ci is not None and not 0 < self.target_ci < 1:
            raise UsageError("`target_ci` is a share of the mean above 0 and below 1, e.g. 3%")
        if self.target_ci is not None and not 2 <= self.repetitions <= self.max_repetitions:
            raise UsageError(
                "with --target-ci, --repetitions (at least 2: an interval needs two) must not "
                "exceed --max-repetitions"
            )

    @property
    def open_ended(self) -> bool:
        return self.duration_s is not None or self.target_ci is not None

    def planned_requests(self, n_prompts: int) -> int | None:
        return None if self.open_ended else n_prompts * self.repetitions

    def observe(self, row: dict[str, Any]) -> None:
        if not row.get("warmup"):
            self.rows.append(row)

    def widest(self) -> float | None:
        """The widest relative half-width among the target figures (None: no interval yet)."""
        ok = [r for r in self.rows if not r.get("error")]
        figures = repetition_figures(ok)
        widths = [
            ci.relative
            for name in TARGET_FIGURES
            if (ci := confidence_interval(figures[name])) is not None
        ]
        return max(widths) if widths else None

    def another(self, rep: int) -> bool:
        """Whether to start pass `rep` (0-based)."""
        if self.duration_s is not None:
            return rep < MAX_SOAK_REPETITIONS
        if rep < self.repetitions:
            return True
        if self.target_ci is None:
            self.stopped_by = "repetitions"
            return False
        if rep >= self.max_repetitions:
            self.stopped_by = "max-repetitions"
            return False
        widest = self.widest()
        if widest is not None and widest <= self.target_ci:
            self.stopped_by = "target-ci"
            return False
        return True

    def out_of_time(self, elapsed_s: float) -> bool:
        if self.duration_s is not None and elapsed_s >= self.duration_s:
            self.stopped_by = "duration"
            return True
        return False

    def status(self, elapsed_s: float) -> str:
        """A few words for the progress bar."""
        if self.duration_s is not None:
            return f"soak {_clock(elapsed_s)} of {_clock(self.duration_s)}"
        if self.target_ci is not None:
            widest = self.widest()
            now = "no interval yet" if widest is None else f"±{widest:.1%}"
            return f"{now} (target ±{self.target_ci:.1%})"
        return ""

    def params(self) -> dict[str, Any]:
        """What the run records of how it ended."""
        reps = sorted({r["repetition"] for r in self.rows})
        return {
            "stopped_by": self.stopped_by,
            "repetitions_done": len(reps),
            "ci_reached": self.widest() if self.target_ci is not None else None,
        }


def schedule(
    passes: Passes, n_prompts: int, clock_s: Callable[[], float]
) -> Iterator[tuple[int, int]]:
    """(pass, prompt index) pairs until `passes` says stop; `clock_s()` is the seconds since
    measuring began (a soak stops at the first request boundary past its duration)."""
    rep = 0
    while passes.another(rep):
        for i in range(n_prompts):
            if passes.out_of_time(clock_s()):
                return
            yield rep, i
        rep += 1


def parse_duration_s(text: str) -> float:
    """`10m`, `90s`, `1h30m`, `2.5m` or plain seconds -> seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    total, number, seen = 0.0, "", False
    for ch in text.strip().lower():
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in units and number:
            total, number, seen = total + float(number) * units[ch], "", True
        else:
            number = "?"
            break
    try:
        total += float(number) if number else 0.0
    except ValueError:
        raise UsageError(f"--duration takes a time like 10m, 90s or 1h30m (got {text!r})") from None
    if total <= 0 and not seen:
        raise UsageError(f"--duration takes a time like 10m, 90s or 1h30m (got {text!r})")
    return total


def parse_share(text: str) -> float:
    """`3%` or `0.03` -> 0.03."""
    t = text.strip()
    try:
        return float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise UsageError(f"--target-ci takes a share of the mean like 3% (got {text!r})") from None


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"
