"""Keyset pages as API responses: {"items": [...], "next": cursor or null}."""

from apps.api.errors import ApiError
from apps.core.pagination import keyset_page


def page(queryset, after: str | None, limit: int, field: str | None = None, descending: bool = True) -> dict:
    try:
        result = keyset_page(queryset, after, limit, field=field, descending=descending)
    except ValueError as exc:  # a cursor that no page of this listing produced
        raise ApiError(422, [{"loc": ["query", "after"], "msg": str(exc), "type": "value_error"}]) from None
    return {"items": result.items, "next": result.next_after}
