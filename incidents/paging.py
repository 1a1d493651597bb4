"""Keyset pages for long lists (an affected list may hold a million people).

OFFSET pagination reads and throws away every row before the page, and its
page count needs a full COUNT. Keyset pages ask for "the next 50 after id X",
which an index answers directly however deep the page.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from django.db.models import QuerySet


@dataclass(frozen=True)
class KeysetPage:
    rows: list
    next_after: int | None  # ?after= for the next page, None on the last page
    prev_before: int | None  # ?before= for the previous page, None on the first page

    @property
    def has_other_pages(self) -> bool:
        return self.next_after is not None or self.prev_before is not None


def _id(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def keyset_page(
    qs: QuerySet, params: Mapping, *, size: int, descending: bool = False
) -> KeysetPage:
    """One page of `qs` in id order (newest first when `descending`), from ?after= or ?before=."""
    after, before = _id(params.get("after")), _id(params.get("before"))
    forward, backward = ("-pk", "pk") if descending else ("pk", "-pk")
    beyond, behind = ("pk__lt", "pk__gt") if descending else ("pk__gt", "pk__lt")
    if before is not None:
        rows = list(qs.filter(**{behind: before}).order_by(backward)[: size + 1])
        if len(rows) > size:
            rows = rows[:size][::-1]
            return KeysetPage(rows, next_after=rows[-1].pk, prev_before=rows[0].pk)
        after = None  # back at the start: show a full first page
    if after is not None:
        qs = qs.filter(**{beyond: after})
    rows = list(qs.order_by(forward)[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return KeysetPage(
        rows,
        next_after=rows[-1].pk if more else None,
        prev_before=rows[0].pk if after is not None and rows else None,
    )


def capped_count(qs: QuerySet, cap: int) -> int:
    """How many rows `qs` holds, counting no further than cap + 1 (cheap on huge lists)."""
    return qs.order_by()[: cap + 1].count()
