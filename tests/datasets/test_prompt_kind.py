"""Marking prompts non-reasoning (issue 19): from an import column or the import's default, on the dataset page
(shown, filtered, marked in bulk) and through the prompts API; bad input named by field."""

import csv
import json

import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.api import tokens
from apps.core.models import AuditEvent
from apps.datasets.models import Prompt
from apps.jobs import launching
from apps.jobs.models import Job
from apps.jobs.runner import execute
from tests.conftest import write_jsonl


def run_import(dataset, path, **params):
    job = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path), **params}, enqueue=False)
    execute(job.pk, worker="test")
    job.refresh_from_db()
    return job


def kinds(dataset) -> dict:
    return dict(Prompt.objects.filter(dataset=dataset).values_list("question", "reasoning"))


# ---- import (the job runs here; its heartbeat thread has its own connection) ----------------------


@pytest.mark.django_db(transaction=True)
def test_an_import_column_marks_prompts_and_an_empty_mark_takes_the_default(dataset, tmp_path):
    records = [{"question": "Hello!", "reasoning": False}, {"question": "Translate 'cat' to French.",
                                                            "reasoning": "non-reasoning"},
               {"question": "What is 2 + 2?", "reasoning": "true"}, {"question": "What is 3 + 3?", "reasoning": 1},
               {"question": "Who are you?", "reasoning": "NON_REASONING"}, {"question": "What is 4 + 4?"}]
    job = run_import(dataset, write_jsonl(tmp_path / "p.jsonl", records))
    assert job.status == "succeeded", job.error
    assert kinds(dataset) == {"Hello!": False, "Translate 'cat' to French.": False, "What is 2 + 2?": True,
                              "What is 3 + 3?": True, "Who are you?": False, "What is 4 + 4?": True}
    assert Prompt.objects.get(question="Hello!").metadata == {}  # the mark is a field, not metadata


@pytest.mark.django_db(transaction=True)
def test_a_kind_column_in_a_csv_and_a_non_reasoning_default(dataset, tmp_path):
    path = tmp_path / "p.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerows([["question", "kind"], ["Write a haiku.", "non_reasoning"], ["What is 5 + 5?", "reasoning"],
                          ["Say hi.", ""]])
    job = run_import(dataset, path, reasoning_field="kind", default_kind="non_reasoning")
    assert job.status == "succeeded", job.error
    assert kinds(dataset) == {"Write a haiku.": False, "What is 5 + 5?": True, "Say hi.": False}


@pytest.mark.django_db(transaction=True)
def test_a_bad_mark_names_the_line_and_field_and_imports_nothing(dataset, tmp_path):
    records = [{"question": "Hello!", "reasoning": "no"}, {"question": "Hi!", "reasoning": "sometimes"},
               {"question": "Hey!", "reasoning": [1]}]
    job = run_import(dataset, write_jsonl(tmp_path / "p.jsonl", records))
    assert job.status == "failed"
    assert "line 2: field 'reasoning': expected true or false (or reasoning / non-reasoning)" in job.error
    assert "line 3: field 'reasoning'" in job.error and "sometimes" not in job.error  # no echo of the file
    assert not Prompt.objects.exists()


@pytest.mark.django_db
def test_an_unknown_default_kind_is_refused_naming_it(dataset, tmp_path):
    with pytest.raises(ValidationError) as exc:
        launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(write_jsonl(tmp_path / "p.jsonl", [])),
                                            "default_kind": "sometimes"})
    assert list(exc.value.message_dict) == ["default_kind"]


@pytest.mark.django_db
def test_the_upload_page_offers_the_mark_column_and_default(admin_client, dataset):
    url = reverse("dataset_import", args=[dataset.name])
    html = admin_client.get(url).content.decode()
    assert 'name="reasoning_field"' in html and 'name="default_kind"' in html
    upload = SimpleUploadedFile("p.jsonl", b'{"question": "Hello!"}\n')
    response = admin_client.post(url, {"file": upload, "question_field": "question", "default_kind": "never"})
    assert response.status_code == 400 and list(response.context["form"].errors) == ["default_kind"]
    upload = SimpleUploadedFile("p.jsonl", b'{"question": "Hello!"}\n')
    response = admin_client.post(url, {"file": upload, "question_field": "question", "default_kind": "non_reasoning"})
    assert response.status_code == 302
    assert Job.objects.get().params["default_kind"] == "non_reasoning"


# ---- the dataset page -------------------------------------------------------------------------------


@pytest.fixture
def mixed(dataset):
    for i, (question, domain, reasoning) in enumerate([("What is 1 + 1?", "math", True),
                                                       ("Write a poem about rain.", "writing", True),
                                                       ("Write a limerick.", "writing", True),
                                                       ("Hello!", "chat", False)]):
        Prompt.objects.create(dataset=dataset, question=question, domain=domain, reasoning=reasoning,
                              content_hash=f"h{i}")
    return dataset


@pytest.mark.django_db
def test_the_page_shows_and_filters_the_kind(admin_client, mixed):
    url = reverse("dataset_detail", args=[mixed.name])
    html = admin_client.get(url).content.decode()
    assert "3 reasoning, 1 non-reasoning" in html and "<th>Kind</th>" in html
    rows = admin_client.get(url, {"kind": "non_reasoning"}, headers={"HX-Request": "true"}).content.decode()
    assert "Hello!" in rows and "What is 1 + 1?" not in rows
    rows = admin_client.get(url, {"kind": "reasoning", "domain": "writing"}, headers={"HX-Request": "true"})
    assert "Write a limerick." in rows.content.decode() and "What is 1 + 1?" not in rows.content.decode()
    bad = admin_client.get(url, {"kind": "sometimes"})
    assert bad.status_code == 400 and "kind:" in bad.content.decode()


@pytest.mark.django_db
def test_marking_in_bulk_changes_what_the_filter_shows_and_is_audited(admin_client, mixed, users):
    mark = reverse("dataset_mark_prompts", args=[mixed.name])
    response = admin_client.post(mark, {"domain": "writing", "mark": "non_reasoning"})
    assert response.status_code == 302 and response["Location"].endswith("?domain=writing")
    assert kinds(mixed) == {"What is 1 + 1?": True, "Write a poem about rain.": False, "Write a limerick.": False,
                            "Hello!": False}
    event = AuditEvent.objects.get(action="prompts.mark")
    assert event.details == {"reasoning": False, "matched": 2, "changed": 2, "domain": "writing"}
    assert admin_client.post(mark, {"q": "limerick", "mark": "reasoning"}).status_code == 302
    assert kinds(mixed)["Write a limerick."] is True and kinds(mixed)["Write a poem about rain."] is False
    assert admin_client.post(mark, {"mark": "maybe"}).status_code == 400
    assert admin_client.post(mark, {"kind": "sometimes", "mark": "reasoning"}).status_code == 400
    admin_client.force_login(users["reviewer"])  # no datasets.change_prompt
    assert admin_client.post(mark, {"mark": "reasoning"}).status_code == 403
    assert kinds(mixed)["Hello!"] is False


# ---- the prompts API --------------------------------------------------------------------------------


@pytest.fixture
def api(client, users):
    def as_role(role):
        _, secret = tokens.issue_token(users[role], "test")
        headers = {"Authorization": f"Bearer {secret}"}

        def call(method, path, body=None, **params):
            if method == "get":
                return client.get("/api" + path, params, headers=headers)
            return getattr(client, method)("/api" + path, json.dumps(body), content_type="application/json",
                                           headers=headers)
        return call
    return as_role


@pytest.mark.django_db
def test_the_api_lists_filters_and_marks_prompts(api, mixed):
    admin = api("admin")
    listed = admin("get", "/prompts", dataset=mixed.name, reasoning="false").json()
    assert [(p["question"], p["reasoning"]) for p in listed["items"]] == [("Hello!", False)]
    writing = admin("get", "/prompts", dataset=mixed.name, domain="writing").json()["items"]
    assert {p["question"] for p in writing} == {"Write a poem about rain.", "Write a limerick."}
    hello = Prompt.objects.get(question="Hello!")
    patched = admin("patch", f"/prompts/{hello.pk}", {"reasoning": True})
    assert patched.status_code == 200 and patched.json()["reasoning"] is True
    marked = admin("post", "/prompts/mark", {"dataset": mixed.name, "domain": "writing", "reasoning": False})
    assert marked.status_code == 200 and marked.json() == {"matched": 2, "changed": 2}
    poem = Prompt.objects.get(question="Write a poem about rain.")
    again = admin("post", "/prompts/mark", {"dataset": mixed.name, "ids": [poem.pk, hello.pk], "reasoning": False})
    assert again.json() == {"matched": 2, "changed": 1}
    assert kinds(mixed) == {"What is 1 + 1?": True, "Write a poem about rain.": False, "Write a limerick.": False,
                            "Hello!": False}
    assert AuditEvent.objects.filter(action="prompts.mark", via="api").count() == 3


@pytest.mark.django_db
def test_the_api_names_bad_input_and_checks_the_permission(api, mixed):
    admin = api("admin")
    hello = Prompt.objects.get(question="Hello!")
    for response, field in [
        (admin("patch", f"/prompts/{hello.pk}", {"reasoning": "perhaps"}), ["body", "reasoning"]),
        (admin("post", "/prompts/mark", {"dataset": mixed.name}), ["body", "reasoning"]),
        (admin("post", "/prompts/mark", {"dataset": mixed.name, "reasoning": False, "ids": [0]}),
         ["body", "ids", 0]),
        (admin("get", "/prompts", reasoning="sometimes"), ["query", "reasoning"]),
    ]:
        assert response.status_code == 422, response.content
        assert response.json()["detail"][0]["loc"] == field
    assert admin("post", "/prompts/mark", {"dataset": "nope", "reasoning": False}).status_code == 404
    assert admin("patch", "/prompts/999999", {"reasoning": False}).status_code == 404
    refused = api("reviewer")("patch", f"/prompts/{hello.pk}", {"reasoning": True})
    assert refused.status_code == 403 and refused.json()["permission"] == "datasets.change_prompt"
    assert Prompt.objects.get(pk=hello.pk).reasoning is False and not AuditEvent.objects.filter(
        action="prompts.mark").exists()
