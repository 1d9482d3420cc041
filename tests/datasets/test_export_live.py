"""`datasets.load_dataset` reads a version straight from the running API: no download step, no glue."""

import pytest

from apps.api.tokens import issue_token
from apps.datasets.models import Example
from apps.datasets.versions import freeze_version

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(("fmt", "builder"), [("messages", "json"), ("parquet", "parquet")])
def test_load_dataset_streams_a_version_from_the_api_url(live_server, dataset, users, tmp_path, fmt, builder):
    from datasets import load_dataset

    examples = []
    for i in range(30):
        messages = [{"role": "user", "content": f"{i} + {i}?"},
                    {"role": "assistant", "content": f"<think>\n{i}+{i}\n</think>\n\n{2 * i}"}]
        example = Example(dataset=dataset, messages=messages)
        example.save()
        examples.append(example)
    version = freeze_version(dataset, examples[::-1])
    _, token = issue_token(users["reviewer"], "trainer")
    url = f"{live_server.url}/api/versions/{version.pk}/export?format={fmt}"
    loaded = load_dataset(builder, data_files=url, split="train", cache_dir=str(tmp_path / "hf"),
                          storage_options={"headers": {"Authorization": f"Bearer {token}"}})
    assert [row["messages"] for row in loaded] == [e.messages for e in examples[::-1]]


def test_one_load_dataset_call_over_the_api_writes_one_audit_row(live_server, dataset, users, tmp_path, monkeypatch):
    """datasets' fsspec asks for the URL five times (size probes by HEAD, then GET, before the download);
    the audit log says one export. A second format is a second export."""
    from datasets import load_dataset

    from apps.core.models import AuditEvent
    from apps.datasets import export

    asked = []
    record_export = export._record_export
    monkeypatch.setattr(export, "_record_export", lambda *args: (asked.append(args[1]), record_export(*args))[1])
    examples = [Example(dataset=dataset, messages=Example.chat(f"{i} + {i}?", str(2 * i))) for i in range(5)]
    for example in examples:
        example.save()
    version = freeze_version(dataset, examples)
    _, token = issue_token(users["reviewer"], "trainer")
    headers = {"headers": {"Authorization": f"Bearer {token}"}}
    url = f"{live_server.url}/api/versions/{version.pk}/export"

    loaded = load_dataset("json", data_files=f"{url}?format=messages", split="train",
                          cache_dir=str(tmp_path / "hf"), storage_options=headers)
    assert len(loaded) == 5
    assert asked.count("messages") >= 2  # the library asked more than once (five times with datasets 5.x)
    events = AuditEvent.objects.filter(action="version.export")
    assert list(events.values_list("actor__username", "target_id", "via", "details")) == [
        ("reviewer_user", str(version.pk), "api", {"fmt": "messages"})]

    load_dataset("parquet", data_files=f"{url}?format=parquet", split="train", cache_dir=str(tmp_path / "hf"),
                 storage_options=headers)
    assert sorted(events.values_list("details__fmt", flat=True)) == ["messages", "parquet"]
