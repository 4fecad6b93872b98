"""HTML tables that read on a laptop and on a phone.

Every cell carries its column's name (`data-label`): on a narrow screen the CSS turns each row
into a card of "name: value" lines instead of letting the table run off the side. Cells are
HTML the caller built (escaped there); headings and names are escaped here.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from edgeprof.report.formatting import short_label

# Below these widths (px) a table's rows become cards: "cards" for most tables, "cards-wide"
# for one whose columns need a whole desktop (the runs table's 18 take about 1,150 px).
CARDS_BELOW_PX = {"cards": 720, "cards-wide": 1250}


def _cards_css(cls: str, below_px: int) -> str:
    t = f"table.{cls}"
    return f"""@media (max-width:{below_px}px){{
{t} thead{{display:none}}
{t},{t} tr,{t} td{{display:block;width:auto}}
{t} tbody{{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(300px,100%),1fr));
gap:.5rem}}
{t} tr{{border:1px solid #d8dce3;border-radius:4px;padding:.2rem .5rem}}
{t} td{{border:0;overflow-wrap:anywhere;padding:.12rem 0;text-align:right}}
{t} td::before{{content:attr(data-label);float:left;text-align:left;color:#5b6472;
padding-right:.6rem;max-width:55%}}
{t} td.t:first-child{{text-align:left;font-weight:600}}
{t} td.t:first-child::before{{content:none}}
}}
"""


# Page-wide rules for tables and names; `edgeprof.report.html` puts them in <style>.
CSS = """
table{border-collapse:collapse;width:100%;font-size:.85rem;margin:.6rem 0}
th,td{padding:.3rem .32rem;border-bottom:1px solid #e6e8ec;text-align:right;vertical-align:top}
th{background:#f3f5f8;font-weight:600}
td.t,th.t{text-align:left}td.t{overflow-wrap:break-word}td.long{overflow-wrap:anywhere}
tr:hover td{background:#fafbfc}
.sub{display:block;color:#5b6472;font-size:.78rem}
abbr.name{text-decoration:none;border-bottom:1px dotted #8a93a3;cursor:help}
""" + "".join(_cards_css(cls, px) for cls, px in CARDS_BELOW_PX.items())


@dataclass(frozen=True)
class Column:
    heading: str
    text: bool = False  # left-aligned text that may wrap; numbers stay right-aligned
    title: str | None = None  # the full heading on hover, where `heading` is a short label
    long: bool = False  # text with long unbroken words (URLs, paths): may break anywhere


def name(full: str, short: str | None = None, limit: int = 28) -> str:
    """A target's name collapsed to a short label, the full name on hover."""
    shown = short_label(short or full, limit)
    if shown == full:
        return html.escape(full)
    return f'<abbr class="name" title="{html.escape(full)}">{html.escape(shown)}</abbr>'


def _cls(c: Column) -> str:
    classes = " ".join(n for n, on in (("t", c.text), ("long", c.long)) if on)
    return f' class="{classes}"' if classes else ""


def table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    table_id: str | None = None,
    row_attrs: Sequence[str] | None = None,
    extra: str = "",
    cards: str = "cards",
) -> str:
    """A table of pre-rendered cells, cards below `CARDS_BELOW_PX[cards]`; `row_attrs` and
    `extra` (the table's own classes and attributes, escaped by the caller) go into the tags
    as given."""
    head = "".join(
        f'<th{_cls(c)} scope="col"'
        + (f' title="{html.escape(c.title)}"' if c.title else "")
        + f">{html.escape(c.heading)}</th>"
        for c in columns
    )
    body = []
    for i, cells in enumerate(rows):
        tds = "".join(
            f'<td{_cls(c)} data-label="{html.escape(c.heading)}">{v}</td>'
            for c, v in zip(columns, cells, strict=True)
        )
        attrs = f" {row_attrs[i]}" if row_attrs else ""
        body.append(f"<tr{attrs}>{tds}</tr>")
    ident = f' id="{html.escape(table_id)}"' if table_id else ""
    classes, _, attrs = extra.partition(" ")
    return (
        f'<table class="{cards} {classes}"{ident} {attrs}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )
