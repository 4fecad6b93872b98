"""The options and output `decide` and `compare` share for `--hybrid` (decision/hybrid.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer

from edgeprof.cli.app import out

if TYPE_CHECKING:
    from rich.table import Table

HYBRID = typer.Option(
    False,
    "--hybrid",
    help="Also price device-first, cloud-when-unsure cascades, replayed over the graded "
    "answers of both sides (thresholds held out; docs/hybrid.md). Needs a suite with checks "
    "and a cloud with answers (--base-url, or an earlier run of the model).",
)
HYBRID_FOLDS = typer.Option(
    5, "--hybrid-folds", help="Folds over prompts that hold each cascade's threshold out."
)


def hybrid_table(hybrids: Sequence[Any]) -> Table | None:
    """One row per device × cloud pair: its best cascade against each side alone."""
    if not hybrids:
        return None
    from rich.table import Table

    from edgeprof.report.formatting import DASH, format_usd, seconds

    table = Table(title="hybrid: device first, cloud when unsure (held out)",
                  title_justify="left")  # fmt: skip
    for name in ("pair", "best cascade", "escalation", "pass rate [95%]", "$/day",
                 "cloud alone $/day", "device alone $/day", "p95 latency"):  # fmt: skip
        table.add_column(name, justify="left" if name in ("pair", "best cascade") else "right")
    for h in hybrids:
        b = h.best
        if b is None:
            table.add_row(h.name, h.why, *[DASH] * 6)
            continue
        r = b.pass_rate
        table.add_row(
            h.name, b.rule, f"{b.escalation_rate:.0%}", f"{r.rate:.0%} [{r.low:.0%}–{r.high:.0%}]",
            format_usd(b.cost.usd_per_day), format_usd(h.cloud_only.cost.usd_per_day),
            format_usd(h.device_only.cost.usd_per_day), seconds(b.latency_p95_s),
        )  # fmt: skip
    return table


def print_curves(hybrids: Sequence[Any]) -> None:
    """Each pair's break-even over the escalation rate, a dim line under the tables."""
    from edgeprof.decision.hybrid import curve_text

    for h in hybrids:
        out.print(f"{h.name}: {curve_text(h)}", style="dim", highlight=False)
