"""The bulk write path: many rows into one table, skipping rows that hit a unique key.

On Postgres rows stream through COPY (several times faster than INSERT). A
batch that collides with a unique key (a retried job writing the same
rollouts again) is replayed through a staging table with ON CONFLICT DO
NOTHING, so retries are idempotent. Other databases (the SQLite default) use
executemany with ON CONFLICT DO NOTHING.
"""

import json
from collections.abc import Iterable, Iterator
from itertools import islice

import psycopg
from django.db import connections, models, router, transaction
from django.utils import timezone

# Postgres cannot store NUL in text or jsonb; model output sometimes holds it.
_NUL, _JSON_NUL = "\x00", "\\u0000"


def _batched(rows: Iterable, size: int) -> Iterator[list]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def _clean_text(value):
    if isinstance(value, str) and _NUL in value:
        return value.replace(_NUL, "\ufffd")
    return value


def _dump_json(value):
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, allow_nan=False).replace(_JSON_NUL, "\\ufffd")


class _Columns:
    """What to write for each concrete field: its column, its default, how to convert a value."""

    def __init__(self, model: type[models.Model]):
        self.fields = [f for f in model._meta.concrete_fields if not isinstance(f, models.AutoField)]
        self.names = [f.column for f in self.fields]
        self.attnames = [f.attname for f in self.fields]
        now = timezone.now()
        self.defaults = {}
        for f in self.fields:
            if getattr(f, "auto_now_add", False) or getattr(f, "auto_now", False):
                self.defaults[f.attname] = now
            elif f.has_default():
                self.defaults[f.attname] = f.get_default()
            elif f.null:
                self.defaults[f.attname] = None
            elif f.blank and f.empty_strings_allowed:
                self.defaults[f.attname] = ""
        self.json_positions = {i for i, f in enumerate(self.fields) if isinstance(f, models.JSONField)}

    def row(self, data: dict) -> list:
        try:
            values = [data[a] if a in data else self.defaults[a] for a in self.attnames]
        except KeyError as missing:
            raise ValueError(f"bulk_insert: no value and no default for field {missing}") from None
        values = [_clean_text(v) for v in values]
        for i in self.json_positions:
            values[i] = _dump_json(values[i])
        return values


def bulk_insert(model: type[models.Model], rows: Iterable[dict], batch_size: int = 20_000) -> int:
    """Insert `rows` (dicts keyed by field attname, e.g. `job_id`); return how many were new.

    Rows that collide with a unique constraint are skipped, never doubled.
    Runs in one transaction: all batches land or none do.
    """
    alias = router.db_for_write(model)
    connection = connections[alias]
    columns = _Columns(model)
    table = connection.ops.quote_name(model._meta.db_table)
    column_sql = ", ".join(connection.ops.quote_name(c) for c in columns.names)
    inserted = 0
    with transaction.atomic(using=alias):
        for batch in _batched(rows, batch_size):
            values = [columns.row(r) for r in batch]
            if connection.vendor == "postgresql":
                inserted += _copy_batch(connection, alias, table, column_sql, values)
            else:
                inserted += _insert_batch(connection, model, columns, table, column_sql, values)
    return inserted


def _copy_batch(connection, alias, table, column_sql, values) -> int:
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        try:
            with transaction.atomic(using=alias):  # a savepoint: a collision undoes only this batch
                with raw.copy(f"COPY {table} ({column_sql}) FROM STDIN") as copy:
                    for row in values:
                        copy.write_row(row)
            return len(values)
        except psycopg.errors.UniqueViolation:
            pass
        # Some rows exist already (a retry): stage the batch and keep only new rows.
        staging = connection.ops.quote_name("bulk_staging_" + table.strip('"'))
        raw.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} AS SELECT {column_sql} FROM {table} WITH NO DATA")
        raw.execute(f"TRUNCATE {staging}")
        with raw.copy(f"COPY {staging} ({column_sql}) FROM STDIN") as copy:
            for row in values:
                copy.write_row(row)
        raw.execute(
            f"INSERT INTO {table} ({column_sql}) SELECT {column_sql} FROM {staging} ON CONFLICT DO NOTHING"
        )
        return raw.rowcount


def _insert_batch(connection, model, columns, table, column_sql, values) -> int:
    placeholders = ", ".join(["%s"] * len(columns.names))
    prepared = []
    for row in values:
        prepared.append(
            [
                v if i in columns.json_positions else f.get_db_prep_save(v, connection)
                for i, (f, v) in enumerate(zip(columns.fields, row))
            ]
        )
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} ({column_sql}) VALUES ({placeholders}) ON CONFLICT DO NOTHING", prepared
        )
        return max(cursor.rowcount, 0)
