"""Charts as inline images: a matplotlib figure becomes a base64 PNG data URI, so the page
that shows it needs no file beside it and no network."""

from __future__ import annotations

import base64
import html
import io
from typing import Any


def png_uri(fig: Any, dpi: int = 90) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def img(uri: str, alt: str, caption: str) -> str:
    """A figure scaled to the page's width (the CSS keeps it there), alt and caption escaped."""
    return (
        f'<figure><img src="{uri}" alt="{html.escape(alt)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )
