"""Keyset pagination: page N costs the same as page 1 at any depth.

A page ends with a cursor naming the last row (its sort value and id); the next
page is the rows strictly after it in sort order, found by an index range scan
instead of an OFFSET that reads and throws away every row before it. The page
before is the same scan run backwards from the first row's cursor.
"""

from dataclasses import dataclass

from django.db.models import Q, QuerySet


@dataclass
class KeysetPage:
    items: list
    next_after: str | None  # pass as ?after= for the next page
    previous_before: str | None = None  # pass as ?before= for the page before


def keyset_page(
    queryset: QuerySet, after: str | None, per_page: int = 50, field: str | None = None, descending: bool = True,
    before: str | None = None,
) -> KeysetPage:
    """Rows ordered by (`field`, id), or by id alone; `after` is the previous page's `next_after`,
    `before` a page's `previous_before` (the rows just before it, still in sort order).

    A field sort leaves out rows whose field is null: they have no place in the order.
    """
    if before:
        backwards = in_order(queryset, field, not descending).filter(_after(before, field, not descending))
        items = list(backwards[: per_page + 1])
        has_earlier = len(items) > per_page
        items = items[:per_page][::-1]
        return KeysetPage(items=items, next_after=_cursor(items[-1], field) if items else None,
                          previous_before=_cursor(items[0], field) if has_earlier else None)
    queryset = in_order(queryset, field, descending)
    if after:
        queryset = queryset.filter(_after(after, field, descending))
    items = list(queryset[: per_page + 1])
    has_more = len(items) > per_page
    items = items[:per_page]
    # Any page reached through a cursor has rows before it (at least the one the cursor names).
    return KeysetPage(items=items, next_after=_cursor(items[-1], field) if has_more else None,
                      previous_before=_cursor(items[0], field) if after and items else None)


def in_order(queryset: QuerySet, field: str | None = None, descending: bool = True) -> QuerySet:
    """The rows in keyset order, (`field`, id) or id alone, without those whose `field` is null."""
    direction = "-" if descending else ""
    if not field:
        return queryset.order_by(f"{direction}pk")
    return queryset.filter(**{f"{field}__isnull": False}).order_by(f"{direction}{field}", f"{direction}pk")


def _cursor(row, field: str | None) -> str:
    return f"{getattr(row, field)!r}~{row.pk}" if field else str(row.pk)


def _after(after: str, field: str | None, descending: bool) -> Q:
    """Rows after the cursor (before it, when `descending` is flipped). `value <= v` (not only the
    OR) gives Postgres a bound for its index scan."""
    past, up_to = ("lt", "lte") if descending else ("gt", "gte")
    if not field:
        try:
            return Q(**{f"pk__{past}": int(after)})
        except ValueError:
            raise ValueError(f"the page cursor must be a row id, got {after!r}") from None
    try:
        value_text, pk_text = after.rsplit("~", 1)
        value, pk = float(value_text), int(pk_text)
    except ValueError:
        raise ValueError(f"the page cursor must come from a page's link, got {after!r}") from None
    beyond = Q(**{f"{field}__{past}": value}) | Q(**{field: value, f"pk__{past}": pk})
    return Q(**{f"{field}__{up_to}": value}) & beyond
