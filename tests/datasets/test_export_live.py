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
