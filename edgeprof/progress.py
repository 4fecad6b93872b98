"""The one shape of a progress callback for long work (convert, verify, quantize, quality,
merge): `progress(stage, done, total)`, where `stage` names what is being counted ("convert",
a model's name, "samples") and `done` of `total` are its units so far. A CLI turns the calls
into a bar; the library never prints. (A profile's own progress is richer: `measure.runner.
Progress` events; `decide`'s are `decision.config.StepEvent`s.)"""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[str, int, int], None]
