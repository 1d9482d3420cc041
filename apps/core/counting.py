"""Counts that stay fast: exact when Postgres can count within a time budget, an estimate (labelled) when not."""

import json
from dataclasses import dataclass

from django.db import OperationalError, connection, transaction
from django.db.models import QuerySet

EXACT_COUNT_MS = 250


@dataclass
class Count:
    value: int
    exact: bool


def estimated_count(model) -> int:
    """Postgres keeps a row estimate; an exact COUNT(*) over millions of rollouts is slow."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
            row = cursor.fetchone()
        if row and row[0] >= 0:
            return row[0]
    return model.objects.count()


def fast_count(queryset: QuerySet, filtered: bool = True) -> Count:
    """The exact count if it takes under EXACT_COUNT_MS, else the planner's estimate for the same query."""
    if connection.vendor != "postgresql":
        return Count(queryset.count(), exact=True)
    if not filtered:
        return Count(estimated_count(queryset.model), exact=False)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            before = cursor.fetchone()[0]
            cursor.execute(f"SET LOCAL statement_timeout = {EXACT_COUNT_MS}")
            value = queryset.count()
            # Inside an outer transaction SET LOCAL would outlive this block: put it back.
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [before])
            return Count(value, exact=True)
    except OperationalError:  # QueryCanceled; rolling back the savepoint also undid the SET LOCAL
        return Count(planner_estimate(queryset), exact=False)


def planner_estimate(queryset: QuerySet) -> int:
    sql, params = queryset.order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])
