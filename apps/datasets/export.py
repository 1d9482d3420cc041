"""Export of a dataset version, streamed: chat JSONL, raw JSONL and Parquet, in the version's order.

- `messages`: one `{"messages": [{"role": ..., "content": ...}, ...]}` per line, which TRL's SFTTrainer
  and `datasets.load_dataset("json", data_files=...)` read as a chat dataset as is.
- `raw`: one object per line with the example's id, content_hash, source, messages, provenance, its
  prompt's question and reference_answer (null without a prompt) and created_at (ISO 8601).
- `parquet`: the raw columns, `messages` as list<struct<role, content>> and `provenance` as a struct with
  the keys and types of `RolloutProvenance` (a key an example's provenance lacks is null; a key outside
  that shape has no column and is kept only in `raw`), one row group at a time. So pyarrow, pandas and
  `datasets` see the same nested fields in both files.

Nothing is held whole in memory: the body is a generator of ~1 MB chunks (Parquet: a row group
each). On Postgres the server makes the JSON lines and they are copied out as bytes (see
`_postgres_lines`), and Arrow's JSON reader turns them into Parquet row groups; on other
databases (the SQLite default) rows come through the ORM's chunked iterator, `json` and pyarrow.
"""

import json
import types
import typing
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta

import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from django.contrib.auth.decorators import permission_required
from django.db import connections, router, transaction
from django.db.models import Max, Min
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from apps.core.audit import record
from apps.core.models import AuditEvent
from apps.datasets.models import DatasetVersion, DatasetVersionExample, Example, Prompt, RolloutProvenance

FORMATS = {
    "messages": ("jsonl", "application/x-ndjson"),
    "raw": ("jsonl", "application/x-ndjson"),
    "parquet": ("parquet", "application/vnd.apache.parquet"),
}
CHUNK_BYTES = 1 << 20
FETCH_ROWS = 2000  # rows per round trip of the ORM's chunked iterator
# Lines per batch that Postgres joins into one COPY row: ~256 KB of ~1 KB examples, and a bounded
# piece (25 MB) even when every example is a 100 KB chain of thought.
BATCH_LINES = 256
# A Parquet row group is built in memory, then written and sent before the next is read: it ends at
# about ROW_GROUP_BYTES of text (so long chains of thought make smaller groups, not a larger
# process), or at ROW_GROUP_ROWS rows on the ORM path, where each row is a few Python objects.
ROW_GROUP_BYTES = 8 << 20
ROW_GROUP_ROWS = 5000
# One export is one audit row, however many requests a client makes for it: see `_record_export`.
EXPORT_AUDIT_WINDOW = timedelta(minutes=2)

RAW_FIELDS = ("id", "content_hash", "source", "messages", "provenance", "question", "reference_answer", "created_at")
_RAW_VALUES = ("example_id", "example__content_hash", "example__source", "example__messages", "example__provenance",
               "example__prompt__question", "example__prompt__reference_answer", "example__created_at")



def arrow_type(hint) -> pa.DataType:
    """The Arrow type of a typed value: a TypedDict is a struct of its keys, `X | None` is X (nullable)."""
    if typing.is_typeddict(hint):
        return pa.struct([(key, arrow_type(value)) for key, value in typing.get_type_hints(hint).items()])
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        (single,) = [arg for arg in args if arg is not type(None)]
        return arrow_type(single)
    if origin is list:
        return pa.list_(arrow_type(args[0]))
    return {int: pa.int64(), str: pa.string(), float: pa.float64(), bool: pa.bool_()}[hint]


# Example.provenance is a RolloutProvenance (or {}): one struct type, so Parquet has the same fields as JSONL.
PROVENANCE_TYPE = arrow_type(RolloutProvenance)

PARQUET_SCHEMA = pa.schema([
    ("id", pa.int64()),
    ("content_hash", pa.string()),
    ("source", pa.string()),
    ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    ("provenance", PROVENANCE_TYPE),
    ("question", pa.string()),
    ("reference_answer", pa.string()),
    ("created_at", pa.string()),
])

_encode_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
_encode_json_ascii = json.JSONEncoder(allow_nan=False).encode


@require_GET
@permission_required("datasets.export_dataset", raise_exception=True)
def export_version(request, pk):
    version = get_object_or_404(DatasetVersion.objects.select_related("dataset"), pk=pk)
    try:
        return export_response(version, request.GET.get("format", "messages"), request.user, via="web")
    except ValueError as exc:
        return render(request, "error.html", {"message": str(exc)}, status=400)


def export_response(version: DatasetVersion, fmt: str, user=None, via: str = "web") -> StreamingHttpResponse:
    """A streaming download of `version` in `fmt`; raises ValueError for an unknown format."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    extension, content_type = FORMATS[fmt]
    _record_export(version, fmt, user, via)  # before streaming: a dropped download is logged too
    response = StreamingHttpResponse(export_chunks(version, fmt), content_type=content_type)
    suffix = "" if fmt == "parquet" else f"-{fmt}"
    filename = f"{version.dataset.name}-v{version.number}{suffix}.{extension}"
    response["Content-Disposition"] = content_disposition_header(True, filename)
    response["X-Content-Hash"] = version.content_hash
    response["X-Example-Count"] = str(version.example_count)
    return response


def _record_export(version: DatasetVersion, fmt: str, user, via: str) -> None:
    """Audit the export once per person, version, format and channel (web, api) within
    EXPORT_AUDIT_WINDOW: the first request writes the row, the others in the window write nothing.

    Why not per request: one `datasets.load_dataset("json", data_files=url)` asks for the URL five
    times. fsspec's HTTP file system learns a file's size from HEAD, and when the answer has no
    Content-Length (a streamed export never has one; the API answers HEAD with 405 anyway) from a
    GET whose body it drops after the headers; `datasets` asks for that size three times (resolving
    the pattern, fingerprinting the files, checking its cache) before the GET that downloads. A
    probe GET cannot be told from the download when it arrives (both are a plain GET, and a small
    file is sent whole before the client hangs up), so the rule is the window, not the request.
    Two deliberate downloads of the same file by the same person within it are one row as well.
    """
    actor = user if getattr(user, "is_authenticated", False) else None
    with transaction.atomic():
        # Two requests at once (a client's parallel probes) take turns here, so only one writes.
        # NO KEY UPDATE: the lock does not hold up rows that only reference the version.
        list(DatasetVersion.objects.select_for_update(no_key=True).filter(pk=version.pk).values_list("pk"))
        recent = AuditEvent.objects.filter(
            action="version.export", target_type=version._meta.label_lower, target_id=str(version.pk),
            actor=actor, via=via, details__fmt=fmt, at__gte=timezone.now() - EXPORT_AUDIT_WINDOW)
        if not recent.exists():
            record(user, "version.export", version, via=via, fmt=fmt)


def export_chunks(version: DatasetVersion, fmt: str) -> Iterator[bytes]:
    """The export's bytes in chunks of about CHUNK_BYTES (a Parquet row group may make one larger)."""
    if fmt == "parquet":
        return _parquet_chunks(version)
    alias = router.db_for_read(Example)
    if connections[alias].vendor == "postgresql":
        return _rechunk(_postgres_lines(version, fmt, alias))
    return _rechunk(_python_lines(version, fmt))


def _rechunk(pieces: Iterator[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Join small pieces into chunks of at least `size` bytes (the last may be shorter).

    Closing this generator closes `pieces` at once (not whenever it is garbage-collected), so a
    download left early ends its query and gives the connection back.
    """
    buffer, buffered = [], 0
    try:
        for piece in pieces:
            buffer.append(piece)
            buffered += len(piece)
            if buffered >= size:
                yield b"".join(buffer)
                buffer, buffered = [], 0
        if buffer:
            yield b"".join(buffer)
    finally:
        pieces.close()


# --- Postgres: the server writes the lines -------------------------------------------------------

def _line_sql(fmt: str) -> str:
    """One example's JSON text, from `e` (the example) and `p` (its prompt, or nulls)."""
    if fmt == "messages":
        # Concatenating jsonb's text is cheaper for the server than building a new jsonb per row.
        return """'{"messages": ' || e.messages::text || '}'"""
    # json_build_object keeps the keys in this order (jsonb would sort them by length). Parquet reads
    # the same lines: Arrow's reader fits the provenance object to PROVENANCE_TYPE.
    return ("json_build_object('id', e.id, 'content_hash', e.content_hash, 'source', e.source, "
            "'messages', e.messages, 'provenance', e.provenance, 'question', p.question, "
            "'reference_answer', p.reference_answer, 'created_at', e.created_at)::text")


def _batches_sql(fmt: str, version_pk: int, first_batch: int, last_batch: int) -> str:
    """One row per BATCH_LINES positions of the version: their lines joined, each ending in a newline, in order.

    Each batch reads its positions from the (version, position) index and the examples by primary
    key, so the first bytes go out at once, whatever the version's order; WITH ORDINALITY tells the
    planner the batches already come in order (no sort of the whole result).
    """
    # Inlined into the SQL, since COPY binds no parameters: int() makes them safe to.
    version_pk, first_batch, last_batch = int(version_pk), int(first_batch), int(last_batch)
    return (
        f"SELECT convert_to(lines.text, 'UTF8') "
        f"FROM generate_series({first_batch}, {last_batch}) WITH ORDINALITY AS batch(number, ordinal) "
        f"CROSS JOIN LATERAL ("
        f"SELECT string_agg({_line_sql(fmt)}, E'\\n' ORDER BY ve.position) || E'\\n' AS text "
        f"FROM {DatasetVersionExample._meta.db_table} ve "
        f"JOIN {Example._meta.db_table} e ON e.id = ve.example_id "
        f"LEFT JOIN {Prompt._meta.db_table} p ON p.id = e.prompt_id "
        f"WHERE ve.version_id = {version_pk} AND ve.position >= batch.number * {BATCH_LINES} "
        f"AND ve.position < (batch.number + 1) * {BATCH_LINES}"
        f") lines WHERE lines.text IS NOT NULL ORDER BY batch.ordinal"
    )


def _postgres_lines(version: DatasetVersion, fmt: str, alias: str) -> Iterator[bytes]:
    """The lines as Postgres writes them, BATCH_LINES at a time, through one COPY … TO STDOUT.

    Measured in benchmarks/export.py (see RESULTS.md), against the alternatives the same run:
    - COPY, not a server-side cursor: rows stream while Python sends the ones before, where a
      cursor leaves the server idle between FETCHes; and a cursor must hold a transaction open
      across the download (outside one Django declares it WITH HOLD, and Postgres then computes
      the whole result into a temporary store before the first row).
    - Batches of lines joined by the server, not a COPY row per line: Python's per-row cost in
      psycopg (about 5 µs) was the web worker's main CPU cost; per batch it is nothing.
    - FORMAT BINARY with bytea: the batch's bytes as they are. Text COPY would double every
      backslash of the JSON escapes, and CSV would quote each batch (it holds newlines).

    The psycopg connection stays locked while the COPY runs: the response must be closed (WSGI
    servers do, and _rechunk passes the close on), which cancels the COPY.
    """
    entries = DatasetVersionExample.objects.using(alias).filter(version=version)
    bounds = entries.aggregate(first=Min("position"), last=Max("position"))
    if bounds["first"] is None:
        return
    query = _batches_sql(fmt, version.pk, bounds["first"] // BATCH_LINES, bounds["last"] // BATCH_LINES)
    # In a transaction of its own (a savepoint inside a caller's): a cancelled COPY aborts the
    # transaction it runs in, and the settings below are LOCAL to it.
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor under Django's wrapper
        # A guard: the batches already come in order, and a plan that sorted the whole result would
        # compute it all (spilled to disk) before the first byte. No JIT: the time is in jsonb's
        # output function, and compiling this plan only delays the start.
        raw.execute("SELECT set_config('enable_sort', 'off', true), set_config('jit', 'off', true)")
        with raw.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)") as copy:
            copy.set_types(["bytea"])
            for (lines,) in copy.rows():
                yield lines


# --- Other databases (the SQLite default): the ORM's chunked iterator and json ---------------------------------------

def _entries(version: DatasetVersion):
    return DatasetVersionExample.objects.filter(version=version).order_by("position")


def _raw_rows(version: DatasetVersion) -> Iterator[dict]:
    # No transaction around the iterator: SQLite reads as it goes in autocommit, and a transaction
    # would take its write lock (transaction_mode IMMEDIATE) for the length of the download.
    for values in _entries(version).values_list(*_RAW_VALUES).iterator(chunk_size=FETCH_ROWS):
        row = dict(zip(RAW_FIELDS, values, strict=True))
        row["created_at"] = row["created_at"].isoformat()
        yield row


def _json_line(value) -> bytes:
    text = _encode_json(value)
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:  # a lone surrogate (stored escaped on SQLite): keep it escaped, as stored
        return _encode_json_ascii(value).encode() + b"\n"


def _python_lines(version: DatasetVersion, fmt: str) -> Iterator[bytes]:
    if fmt == "raw":
        with closing(_raw_rows(version)) as rows:
            for row in rows:
                yield _json_line(row)
        return
    for messages in _entries(version).values_list("example__messages", flat=True).iterator(chunk_size=FETCH_ROWS):
        yield _json_line({"messages": messages})


# --- Parquet ---------------------------------------------------------------------------------------

class _ChunkSink:
    """A write-only file for ParquetWriter: what it writes is taken away after each row group."""

    closed = False

    def __init__(self):
        self._parts: list[bytes] = []
        self._position = 0

    def write(self, data) -> int:
        part = bytes(data)
        self._parts.append(part)
        self._position += len(part)
        return len(part)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _tables_from_rows(rows: Iterator[dict]) -> Iterator[pa.Table]:
    """Row groups from the ORM's rows (databases other than Postgres)."""
    group: list[dict] = []
    size = 0
    with closing(rows):
        for row in rows:
            group.append(row)
            size += sum(len(message.get("content") or "") for message in row["messages"])
            if len(group) == ROW_GROUP_ROWS or size >= ROW_GROUP_BYTES:
                yield _table(group)
                group, size = [], 0
        if group:
            yield _table(group)


def _table(rows: list[dict]) -> pa.Table:
    """Parquet holds each message's role and content: the chat format every example has."""
    columns = {name: [row[name] for row in rows] for name in RAW_FIELDS}  # a missing provenance key becomes null
    return pa.Table.from_pydict(columns, schema=PARQUET_SCHEMA)


def _tables_from_lines(batches: Iterator[bytes]) -> Iterator[pa.Table]:
    """Row groups parsed by Arrow's JSON reader from the server's lines (Postgres): no Python object per row."""
    group: list[bytes] = []
    size = 0
    with closing(batches):
        for batch in batches:
            group.append(batch)
            size += len(batch)
            if size >= ROW_GROUP_BYTES:
                yield _parse_lines(b"".join(group))
                group, size = [], 0
        if group:
            yield _parse_lines(b"".join(group))


def _parse_lines(data: bytes) -> pa.Table:
    # One block for the whole group: a line may not straddle two blocks, and some lines are long.
    read = pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1)
    # Keys the schema does not name (in a message or a provenance, say) are left out, as the ORM path leaves them.
    parse = pa_json.ParseOptions(explicit_schema=PARQUET_SCHEMA, unexpected_field_behavior="ignore")
    return pa_json.read_json(pa.BufferReader(data), read_options=read, parse_options=parse)


def _parquet_chunks(version: DatasetVersion) -> Iterator[bytes]:
    alias = router.db_for_read(Example)
    if connections[alias].vendor == "postgresql":
        tables = _tables_from_lines(_postgres_lines(version, "parquet", alias))
    else:
        tables = _tables_from_rows(_raw_rows(version))
    sink = _ChunkSink()
    writer = pq.ParquetWriter(sink, PARQUET_SCHEMA)
    with closing(tables):  # closed with this generator: the query ends with the download
        for table in tables:
            writer.write_table(table)
            yield sink.take()
    writer.close()  # the footer: an empty version still makes a valid file, with the schema
    yield sink.take()
