"""The bulk write path: many rows into one table, skipping rows that hit a unique key.

On Postgres rows stream through COPY (several times faster than INSERT). A
batch that collides with a unique key (a retried job writing the same
rollouts again) is replayed through a staging table with ON CONFLICT DO
NOTHING, so retries are idempotent. Other databases (the SQLite default) use
executemany with ON CONFLICT DO NOTHING.

Speed on Postgres (benchmarks/ingest.py, benchmarks/RESULTS.md) is bound by
the server, not by Python: per rollout it parses the row, compresses the long
text (TOAST) and updates every index. So the COPY is binary (the server
skips text parsing) and rows are converted while the server works on the
ones before them.
"""

import json
from collections.abc import Iterable, Iterator
from itertools import islice

import psycopg
from django.db import connections, models, router, transaction
from django.utils import timezone
from psycopg.postgres import types as pg_types
from psycopg.types.json import set_json_dumps

# Postgres cannot store NUL in text or jsonb; model output sometimes holds it.
_NUL, _JSON_NUL = "\x00", "\\u0000"

# json.dumps with options builds a new encoder on every call; one encoder, made once, is faster.
_encode_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode

# Binary COPY needs each value in its column's Python type. psycopg's binary dumpers refuse
# most other values (say "3" for an integer, a naive datetime) with one of _NOT_BINARY, but
# store a few wrong without a word: int2/int4 wrap around (2**32 + 5 is stored as 5) and bool
# takes any truthy value as true ("false" included); _check_binary refuses those first. A
# refused batch goes again as text, which the server parses as it always did (a real error,
# like a missing value, comes back from that text attempt). Tables with a column type not
# checked here (numeric, uuid, arrays...) always go as text.
_NOT_BINARY = (TypeError, ValueError, OverflowError)
_INT_LIMITS = {pg_types["int2"].oid: 2**15, pg_types["int4"].oid: 2**31}
_BOOL_OID = pg_types["bool"].oid
_BINARY_OIDS = {
    pg_types[name].oid
    for name in ("int2", "int4", "int8", "float8", "bool", "text", "varchar", "timestamptz", "jsonb", "bytea")
}


def _batched(rows: Iterable, size: int) -> Iterator[list]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def _without_nul(value):
    if isinstance(value, str):
        return value.replace(_NUL, "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_nul(v) for v in value]
    return value


def _dump_json(value):
    if value is None:
        return None
    text = _encode_json(value)
    if _JSON_NUL in text:  # rare: clean the strings themselves, not the escaped text
        text = _encode_json(_without_nul(value))
    return text


class _Columns:
    """What to write for each concrete field: its column, its default, how to convert a value."""

    def __init__(self, model: type[models.Model]):
        self.fields = [f for f in model._meta.concrete_fields
                       if not isinstance(f, models.AutoField) and not f.generated]
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
        self.required = [a for a in self.attnames if a not in self.defaults]
        self.attname_defaults = [(a, self.defaults.get(a)) for a in self.attnames]

    def row(self, data: dict, dump_json: bool = True) -> list:
        """The values to write for `data`, in column order; JSON left as objects unless `dump_json`."""
        for a in self.required:
            if a not in data:
                raise ValueError(f"bulk_insert: no value and no default for field '{a}'")
        # Runs once per row: comprehensions with no function call per value.
        get = data.get
        values = [get(a, default) for a, default in self.attname_defaults]
        values = [v.replace(_NUL, "\ufffd") if isinstance(v, str) and _NUL in v else v for v in values]
        if dump_json:
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
        if connection.vendor == "postgresql":
            types = _prepare_copy(connection, table, column_sql)
        for batch in _batched(rows, batch_size):
            if connection.vendor == "postgresql":
                inserted += _copy_batch(connection, alias, table, column_sql, columns, types, batch)
            else:
                values = [columns.row(r) for r in batch]
                inserted += _insert_batch(connection, model, columns, table, column_sql, values)
    return inserted


def _prepare_copy(connection, table, column_sql) -> list[int] | None:
    """The column types for binary COPY, or None if the table has a type that goes as text only."""
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        # Binary COPY applies no casts: each value must be sent in its column's exact type.
        raw.execute(f"SELECT {column_sql} FROM {table} LIMIT 0")
        types = [c.type_code for c in raw.description]
        return types if set(types) <= _BINARY_OIDS else None


def _copy_batch(connection, alias, table, column_sql, columns, types, batch) -> int:
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        try:
            with transaction.atomic(using=alias):  # a savepoint: a collision undoes only this batch
                _copy(alias, raw, table, column_sql, columns, types, batch)
            return len(batch)
        except psycopg.errors.UniqueViolation:
            pass
        # Some rows exist already (a retry): stage the batch and keep only new rows.
        staging = connection.ops.quote_name("bulk_staging_" + table.strip('"'))
        raw.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} AS SELECT {column_sql} FROM {table} WITH NO DATA")
        raw.execute(f"TRUNCATE {staging}")
        _copy(alias, raw, staging, column_sql, columns, types, batch)
        raw.execute(
            f"INSERT INTO {table} ({column_sql}) SELECT {column_sql} FROM {staging} ON CONFLICT DO NOTHING"
        )
        return raw.rowcount


def _check_binary(types: list[int]):
    """A function that raises TypeError for a row psycopg would dump wrong in binary."""
    ints = [(i, _INT_LIMITS[t]) for i, t in enumerate(types) if t in _INT_LIMITS]
    bools = [i for i, t in enumerate(types) if t == _BOOL_OID]

    def check(values):
        for i, limit in ints:
            v = values[i]
            if v is not None and not (type(v) is int and -limit <= v < limit):
                raise TypeError(f"{v!r} is not a {limit.bit_length()}-bit integer")
        for i in bools:
            if values[i] is not None and type(values[i]) is not bool:
                raise TypeError(f"{values[i]!r} is not a bool")

    return check


def _copy(alias, raw, target, column_sql, columns, types, batch) -> None:
    """COPY `batch` into `target`: binary if `types`, or text if a value does not fit its column's binary format.

    Rows are converted inside the COPY, not before it, so Python converts
    while the server stores the rows already sent.
    """
    if types:
        set_json_dumps(_dump_json, context=raw)  # how the binary COPY dumps JSON fields: NUL replaced
        check = _check_binary(types)
        try:
            with transaction.atomic(using=alias):  # a savepoint, to retry in text
                with raw.copy(f"COPY {target} ({column_sql}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(types)
                    for data in batch:
                        values = columns.row(data, dump_json=False)
                        check(values)
                        copy.write_row(values)
                return
        except _NOT_BINARY:
            pass
    # The text format lets the server parse such values, as INSERT would ("3" into an integer).
    with raw.copy(f"COPY {target} ({column_sql}) FROM STDIN") as copy:
        for data in batch:
            copy.write_row(columns.row(data))


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
