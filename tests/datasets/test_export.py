"""Export of dataset versions: each format round-trips exactly, loads with `datasets`, and streams."""

import io
import json
import random
from datetime import datetime

import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import pytest
from django.core.signals import request_finished
from django.db import close_old_connections
from django.urls import reverse

from apps.core.models import AuditEvent
from apps.datasets import export
from apps.datasets.export import CHUNK_BYTES, PARQUET_SCHEMA, PROVENANCE_TYPE, export_response
from apps.datasets.models import Example, Prompt
from apps.datasets.versions import freeze_version

HOSTILE_TEXTS = [
    "line one\nline two\r\nline three\rend",
    'He said "stop" and \'left\'; a backslash \\ and an escaped \\n that is not a newline, \\u0000 as text',
    "</script><script>alert(1)</script><!-- -->",
    "emoji 😀🧠👩‍👩‍👧 and other planes: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢, RTL مرحبا, combining e\u0301, CJK 所以答案是",
    "control characters: \x01\x02\x07\x08\t\x0b\x0c\x1b\x1f\x7f\x85 and separators \u2028 \u2029 done",
    "<think>\n\\frac{a}{b} = \\sqrt{2}, $x^2$, \\boxed{\\text{yes}}\n</think>\n\nThe answer is $\\boxed{42}$.",
    "",
    "x" * 99_990 + "\n\\\"end\"",  # 100k characters
    "\x01\x02",  # delimiter and quote bytes of a CSV COPY, alone
]


def _hostile_examples(dataset) -> list[Example]:
    prompt = Prompt.objects.create(dataset=dataset, question='What is "2+2"?\n</script>', reference_answer="4\\n",
                                   content_hash="p1")
    examples = []
    for i, text in enumerate(HOSTILE_TEXTS):
        provenance = {"rollout": i, "job": None, "edits": [{"by": "ann\"otator\n", "at": "2026-11-21T10:00:00+00:00",
                                                           "verdict": "edit", "version": i}]} if i % 2 else {}
        example = Example(
            dataset=dataset, prompt=prompt if i % 3 else None, source="annotation" if i % 2 else "rollout",
            messages=[{"role": "user", "content": f"question {i}: {text[:50]}"},
                      {"role": "assistant", "content": text}],
            provenance=provenance,
        )
        example.save()
        examples.append(example)
    return examples


def _expected_raw(example: Example) -> dict:
    prompt = example.prompt
    return {"id": example.pk, "content_hash": example.content_hash, "source": example.source,
            "messages": example.messages, "provenance": example.provenance,
            "question": prompt.question if prompt else None,
            "reference_answer": prompt.reference_answer if prompt else None,
            "created_at": example.created_at}


def _download(client, version, fmt=None) -> bytes:
    response = client.get(reverse("version_export", args=[version.pk]), {"format": fmt} if fmt else {})
    assert response.status_code == 200, response.content
    assert response.streaming
    return b"".join(response.streaming_content)


def _jsonl(body: bytes) -> list[dict]:
    assert body == b"" or body.endswith(b"\n")
    return [json.loads(line) for line in body.decode("utf-8").split("\n")[:-1]]


def _with_datetime(row: dict) -> dict:
    """created_at as an aware datetime: the export writes ISO 8601 text."""
    return {**row, "created_at": datetime.fromisoformat(row["created_at"])}


def _without_nulls(value):
    """Arrow gives every struct all the keys seen in the column: the missing ones come back as None."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _with_every_key(value, arrow_type=PROVENANCE_TYPE):
    """A provenance as Parquet holds it: every key of its struct type, null where the example has none."""
    if pa.types.is_struct(arrow_type):
        return {field.name: _with_every_key((value or {}).get(field.name), field.type) for field in arrow_type}
    if pa.types.is_list(arrow_type) and value is not None:
        return [_with_every_key(item, arrow_type.value_type) for item in value]
    return value


def _load_dataset(builder: str, path) -> list[dict]:
    from datasets import load_dataset

    return load_dataset(builder, data_files=str(path), split="train", cache_dir=str(path.parent / "hf")).to_list()


@pytest.fixture
def reviewer_client(client, users):
    client.force_login(users["reviewer"])
    return client


@pytest.fixture
def hostile_version(dataset, users):
    examples = _hostile_examples(dataset)
    random.Random(7).shuffle(examples)  # the version's order, not the examples' ids, decides the export's
    return freeze_version(dataset, examples, user=users["reviewer"]), examples


def test_messages_round_trip_and_load_dataset(reviewer_client, hostile_version, tmp_path):
    version, examples = hostile_version
    body = _download(reviewer_client, version)  # messages is the default format
    expected = [{"messages": e.messages} for e in examples]
    assert _jsonl(body) == expected
    path = tmp_path / "export.jsonl"
    path.write_bytes(body)
    assert _load_dataset("json", path) == expected


def test_raw_round_trip_and_load_dataset(reviewer_client, hostile_version, tmp_path):
    version, examples = hostile_version
    body = _download(reviewer_client, version, "raw")
    rows = _jsonl(body)
    assert [list(row) for row in rows] == [["id", "content_hash", "source", "messages", "provenance", "question",
                                            "reference_answer", "created_at"]] * len(examples)
    assert [_with_datetime(row) for row in rows] == [_expected_raw(e) for e in examples]
    path = tmp_path / "export.jsonl"
    path.write_bytes(body)
    loaded = _load_dataset("json", path)
    # Arrow may read the ISO timestamps as timestamps; the rest comes back as written.
    for row, example in zip(loaded, examples, strict=True):
        expected = _expected_raw(example)
        created = row.pop("created_at")
        assert (created if isinstance(created, datetime) else datetime.fromisoformat(created)).replace(
            tzinfo=None) == expected.pop("created_at").replace(tzinfo=None)
        assert _without_nulls(row) == _without_nulls(expected)


def test_parquet_round_trip_and_load_dataset(reviewer_client, hostile_version, tmp_path):
    version, examples = hostile_version
    body = _download(reviewer_client, version, "parquet")
    table = pq.read_table(io.BytesIO(body))
    assert table.schema == PARQUET_SCHEMA
    rows = table.to_pylist()
    expected = [_expected_raw(e) for e in examples]
    for row in expected:
        row["provenance"] = _with_every_key(row["provenance"])
    assert [_with_datetime(row) for row in rows] == expected
    path = tmp_path / "export.parquet"
    path.write_bytes(body)
    assert _load_dataset("parquet", path) == table.to_pylist()


def test_provenance_reads_back_the_same_from_jsonl_and_parquet(reviewer_client, hostile_version, tmp_path):
    """One shape in both files: the same nested fields, whichever reader, null where a key is absent."""
    version, examples = hostile_version
    copied = Example.objects.create(dataset=examples[0].dataset, messages=[{"role": "user", "content": "copy"}],
                                    provenance={"copied_from": examples[1].pk, "rollout": 7, "job": 2,
                                                "model_version": None, "bulk_action": 4})
    version = freeze_version(version.dataset, [*examples, copied])
    raw = _download(reviewer_client, version, "raw")
    parquet = pq.read_table(io.BytesIO(_download(reviewer_client, version, "parquet")))
    assert parquet.schema.field("provenance").type == PROVENANCE_TYPE
    # Read with the same types (Arrow's JSON reader would otherwise guess that an ISO time is a timestamp).
    jsonl = pa_json.read_json(io.BytesIO(raw), parse_options=pa_json.ParseOptions(
        explicit_schema=pa.schema([("provenance", PROVENANCE_TYPE)]), unexpected_field_behavior="ignore"))
    from_jsonl = jsonl.column("provenance").to_pylist()
    from_parquet = parquet.column("provenance").to_pylist()
    assert from_parquet == from_jsonl
    assert from_parquet == [_with_every_key(row["provenance"]) for row in _jsonl(raw)]
    assert from_parquet[-1] == _with_every_key(copied.provenance) and from_parquet[-1]["copied_from"] == examples[1].pk
    edited = next(p for p in from_parquet if p["edits"])
    assert edited["edits"][0] == {"by": "ann\"otator\n", "at": "2026-11-21T10:00:00+00:00", "verdict": "edit",
                                  "version": edited["rollout"]}
    assert parquet.to_pandas()["provenance"].iloc[-1]["bulk_action"] == 4  # pandas: a dict per row


def test_small_batches_and_row_groups_that_end_at_a_size(reviewer_client, hostile_version, monkeypatch):
    """Batch edges lose and double nothing; long texts make more, smaller Parquet row groups."""
    version, examples = hostile_version
    monkeypatch.setattr(export, "BATCH_LINES", 2)  # Postgres joins two lines per COPY row
    monkeypatch.setattr(export, "ROW_GROUP_BYTES", 50_000)  # the 100k-character example ends a group
    assert _jsonl(_download(reviewer_client, version)) == [{"messages": e.messages} for e in examples]
    parquet = pq.ParquetFile(io.BytesIO(_download(reviewer_client, version, "parquet")))
    assert parquet.metadata.num_row_groups >= 2
    assert [row["id"] for row in parquet.read().to_pylist()] == [e.pk for e in examples]


def test_headers_and_audit_event(reviewer_client, hostile_version, users):
    version, examples = hostile_version
    response = reviewer_client.get(reverse("version_export", args=[version.pk]), {"format": "raw"})
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"] == f'attachment; filename="gsm-mini-v{version.number}-raw.jsonl"'
    assert response["X-Content-Hash"] == version.content_hash
    assert response["X-Example-Count"] == str(len(examples))
    event = AuditEvent.objects.get(action="version.export")
    assert (event.actor, event.target_id, event.via, event.details) == (users["reviewer"], str(version.pk), "web",
                                                                        {"fmt": "raw"})
    b"".join(response.streaming_content)
    response = reviewer_client.get(reverse("version_export", args=[version.pk]), {"format": "parquet"})
    assert response["Content-Type"] == "application/vnd.apache.parquet"
    assert response["Content-Disposition"] == f'attachment; filename="gsm-mini-v{version.number}.parquet"'
    b"".join(response.streaming_content)


def test_one_export_asked_for_several_times_is_one_audit_row(reviewer_client, users, dataset):
    """A client that probes before it downloads (datasets' fsspec does, see tests/datasets/test_export_live.py)
    asks for the same export several times: one row per person, version, format and channel in a window."""
    from datetime import timedelta

    from django.db.models import F
    from django.test import Client

    version = freeze_version(dataset, _hostile_examples(dataset)[:2])
    events = AuditEvent.objects.filter(action="version.export")
    for _ in range(3):
        _download(reviewer_client, version, "messages")
    assert list(events.values_list("actor__username", "via", "details")) == [
        ("reviewer_user", "web", {"fmt": "messages"})]
    _download(reviewer_client, version, "raw")  # another format is another export
    admin = Client()
    admin.force_login(users["admin"])
    _download(admin, version, "messages")  # another person
    b"".join(export_response(version, "messages", users["reviewer"], via="api").streaming_content)  # another channel
    assert events.count() == 4
    events.update(at=F("at") - export.EXPORT_AUDIT_WINDOW - timedelta(seconds=1))  # the window has passed
    _download(reviewer_client, version, "messages")
    assert events.count() == 5


def test_empty_version_exports_empty_valid_files(reviewer_client, dataset):
    version = freeze_version(dataset, [])
    assert _download(reviewer_client, version, "messages") == b""
    assert _download(reviewer_client, version, "raw") == b""
    table = pq.read_table(io.BytesIO(_download(reviewer_client, version, "parquet")))
    assert table.num_rows == 0 and table.schema == PARQUET_SCHEMA


def test_viewer_forbidden_missing_version_and_bad_format(client, users, reviewer_client, dataset):
    version = freeze_version(dataset, [])
    url = reverse("version_export", args=[version.pk])
    assert reviewer_client.get(reverse("version_export", args=[version.pk + 1000])).status_code == 404
    response = reviewer_client.get(url, {"format": "csv"})
    assert response.status_code == 400
    assert "Unknown export format &#x27;csv&#x27;: use one of messages, raw, parquet" in response.content.decode()
    with pytest.raises(ValueError, match="messages, raw, parquet"):
        export_response(version, "xml")
    client.force_login(users["viewer"])
    assert client.get(url).status_code == 403
    assert not AuditEvent.objects.filter(action="version.export").exists()


def test_large_version_streams_in_chunks(reviewer_client, dataset):
    rng = random.Random(3)
    examples = [Example(dataset=dataset, source="rollout", messages=[
        {"role": "user", "content": f"question {i}"},
        {"role": "assistant", "content": "<think>\n" + "".join(rng.choices("abc \\\"\n", k=1000)) + "\n</think>"}])
        for i in range(3000)]
    for example in examples:
        example.content_hash = Example.hash_for(example.messages)
    examples = Example.objects.bulk_create(examples)
    rng.shuffle(examples)
    version = freeze_version(dataset, examples)
    response = reviewer_client.get(reverse("version_export", args=[version.pk]))
    assert response.streaming and not isinstance(response.streaming_content, bytes | list)
    chunks = list(response.streaming_content)
    assert len(chunks) >= 3  # about 3 MB in chunks of about 1 MB
    assert all(len(chunk) < 2 * CHUNK_BYTES for chunk in chunks)  # bounded: never the whole body at once
    assert _jsonl(b"".join(chunks)) == [{"messages": e.messages} for e in examples]


def test_leaving_a_download_early_keeps_the_connection_usable(reviewer_client, dataset):
    examples = [Example(dataset=dataset, messages=[{"role": "user", "content": f"{i} " + "y" * 2000}])
                for i in range(1500)]
    for example in examples:
        example.save()
    version = freeze_version(dataset, examples)
    for fmt, start in [("messages", b'{"messages": '), ("parquet", b"PAR1")]:  # COPY, then the ORM's cursor
        response = export_response(version, fmt)  # straight from the function: no test client around it
        chunks = iter(response)  # what a WSGI server iterates
        assert next(chunks).startswith(start)
        _close_as_wsgi_server(response)  # the client went away
        assert Example.objects.filter(dataset=dataset).count() == 1500  # the query ended; the connection answers


def _close_as_wsgi_server(response):
    """response.close(), as the server calls it, without request_finished closing the test's connection."""
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)
