"""Keyset pagination on the primary key: page N costs the same as page 1 at any depth."""

from dataclasses import dataclass

from django.db.models import QuerySet


@dataclass
class KeysetPage:
    items: list
    next_after: int | None  # pass as ?after= for the next page


def keyset_page(queryset: QuerySet, after: str | None, per_page: int = 50) -> KeysetPage:
    """Newest first (descending id); `after` is the last id of the previous page."""
    if after:
        try:
            queryset = queryset.filter(pk__lt=int(after))
        except ValueError:
            raise ValueError(f"'after' must be a row id, got {after!r}") from None
    items = list(queryset.order_by("-pk")[: per_page + 1])
    has_more = len(items) > per_page
    items = items[:per_page]
    return KeysetPage(items=items, next_after=items[-1].pk if has_more else None)
