"""Keyset pages: a list route asks for one row more than the page, and the last row's id
becomes the cursor of the next page (``before``), so a page costs the same however deep."""

from __future__ import annotations

from typing import Any

__all__ = ["page_of"]


def page_of(rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """The page of ``limit`` rows out of ``limit + 1`` read, and the next page's cursor
    (None on the last page)."""
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": rows, "next": rows[-1]["id"] if more else None}
