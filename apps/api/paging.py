"""Keyset pages as API responses: {"items": [...], "next": cursor or null, "total", "total_is_estimate"}."""

from apps.api.errors import ApiError
from apps.core.counting import fast_count
from apps.core.pagination import in_order, keyset_page


def page(queryset, after: str | None, limit: int, field: str | None = None, descending: bool = True,
         filtered: bool = True) -> dict:
    """One page of `queryset`, and how many rows the whole list holds (every page, not only those after the
    cursor), counted as the rollout browser counts: exact when Postgres counts within EXACT_COUNT_MS, else the
    planner's estimate, marked as one. `filtered=False` (an unfiltered table) takes the table's estimate at once."""
    try:
        result = keyset_page(queryset, after, limit, field=field, descending=descending)
    except ValueError as exc:  # a cursor that no page of this listing produced
        raise ApiError(422, [{"loc": ["query", "after"], "msg": str(exc), "type": "value_error"}]) from None
    total = fast_count(in_order(queryset, field, descending), filtered)  # a field sort leaves out its nulls
    return {"items": result.items, "next": result.next_after, "total": total.value,
            "total_is_estimate": not total.exact}
