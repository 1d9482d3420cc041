import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse

from apps.core.bulk import bulk_insert
from apps.datasets.models import Dataset, Prompt
from apps.jobs.models import Job

pytestmark = pytest.mark.django_db


def add_prompts(dataset, n):
    bulk_insert(Prompt, [{"dataset_id": dataset.pk, "question": f"question number {i}", "content_hash": f"h{i}"}
                         for i in range(n)])


def test_the_base_page_has_navigation_and_local_htmx(admin_client):
    html = admin_client.get(reverse("home")).content.decode()
    for section in ["Datasets", "Rollouts", "Review", "Jobs", "Models"]:
        assert f">{section}</a>" in html
    assert "/static/django_htmx/htmx" in html
    assert "https://" not in html  # the machine is offline: nothing from a CDN


def test_dataset_list_shows_counts_and_filters_by_name(admin_client, dataset):
    add_prompts(dataset, 3)
    Dataset.objects.create(name="other")
    html = admin_client.get(reverse("dataset_list"), {"q": "gsm"}).content.decode()
    assert "gsm-mini" in html and ">3</td>" in html and "other" not in html


def test_the_dataset_list_counts_prompts_examples_and_versions_without_a_query_per_dataset(admin_client, dataset):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.datasets.models import Example
    from apps.datasets.versions import freeze_version

    add_prompts(dataset, 3)
    examples = []
    for i in range(5):
        example = Example(dataset=dataset, messages=Example.chat(f"{i}?", f"{i}"))
        example.save()
        examples.append(example)
    freeze_version(dataset, examples[:2])
    freeze_version(dataset, examples)
    Dataset.objects.create(name="empty")

    def counts(html, name):
        row = html.split(f">{name}</a>")[1].split("</tr>")[0]
        return [row.split(f'data-count="{kind}">')[1].split("</td>")[0] for kind in ("prompts", "examples", "versions")]

    with CaptureQueriesContext(connection) as two:
        html = admin_client.get(reverse("dataset_list")).content.decode()
    # Joins would have counted 3 x 5 x 2 = 30 of each.
    assert counts(html, "gsm-mini") == ["3", "5", '<a href="/datasets/gsm-mini/versions/">2</a>']
    assert counts(html, "empty") == ["0", "0", "0"]
    for i in range(5):
        Dataset.objects.create(name=f"more-{i}")
    with CaptureQueriesContext(connection) as seven:
        admin_client.get(reverse("dataset_list"))
    assert len(seven) == len(two)  # no query per dataset


def test_an_admin_creates_a_dataset(admin_client, users):
    response = admin_client.post(reverse("dataset_create"), {"name": "new-set", "description": "d"})
    assert response.status_code == 302
    assert Dataset.objects.get(name="new-set").created_by == users["admin"]
    assert admin_client.post(reverse("dataset_create"), {"name": "not a slug!"}).status_code == 400


def test_prompt_list_searches_and_pages_by_keyset(admin_client, dataset):
    add_prompts(dataset, 120)
    url = reverse("dataset_detail", args=[dataset.name])
    first = admin_client.get(url)
    assert first.context["page"].next_after is not None
    assert len(first.context["page"].items) == 50
    second = admin_client.get(url, {"after": first.context["page"].next_after}, HTTP_HX_REQUEST="true")
    assert "<html" not in second.content.decode()  # htmx gets only the rows
    assert len(second.context["page"].items) == 50
    assert max(p.pk for p in second.context["page"].items) < min(p.pk for p in first.context["page"].items)
    found = admin_client.get(url, {"q": "number 7"}).context["page"].items
    assert {p.question for p in found} == {"question number 7", *{f"question number 7{i}" for i in range(10)}}


def test_a_malformed_cursor_is_a_clear_400(admin_client, dataset):
    response = admin_client.get(reverse("dataset_detail", args=[dataset.name]), {"after": "x'; drop"})
    assert response.status_code == 400
    assert b"must be a row id" in response.content


def test_an_upload_launches_an_import_job(admin_client, dataset, users):
    content = "".join(json.dumps({"question": f"q{i}", "answer": str(i)}) + "\n" for i in range(10)).encode()
    response = admin_client.post(
        reverse("dataset_import", args=[dataset.name]),
        {"file": SimpleUploadedFile("prompts.jsonl", content), "question_field": "question"},
    )
    job = Job.objects.get()
    assert response.status_code == 302 and response.url == reverse("job_detail", args=[job.pk])
    assert (job.kind, job.status, job.created_by, job.params["format"]) == ("import_prompts", "queued",
                                                                           users["admin"], "jsonl")
    assert open(job.params["path"], "rb").read() == content


def test_an_upload_over_the_limit_is_refused_with_a_clear_message(admin_client, dataset):
    with override_settings(MAX_UPLOAD_BYTES=1024):
        response = admin_client.post(
            reverse("dataset_import", args=[dataset.name]),
            {"file": SimpleUploadedFile("big.jsonl", b"x" * 4096), "question_field": "question"},
        )
    assert response.status_code == 400
    assert "the limit is 1.0\xa0KB" in response.content.decode()
    assert Job.objects.count() == 0


def test_an_upload_with_an_unknown_format_names_the_field(admin_client, dataset):
    response = admin_client.post(
        reverse("dataset_import", args=[dataset.name]),
        {"file": SimpleUploadedFile("prompts.txt", b"{}"), "question_field": "question"},
    )
    assert response.status_code == 400
    assert "cannot tell the format" in response.content.decode()
    assert Job.objects.count() == 0


def test_the_job_page_polls_until_the_job_ends(admin_client):
    running = Job.objects.create(kind="import_prompts", status="running", progress_done=5, progress_total=10)
    partial = admin_client.get(reverse("job_detail", args=[running.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 1s"' in partial and "5 / 10" in partial and "<html" not in partial
    done = Job.objects.create(kind="import_prompts", status="succeeded", result={"inserted": 3})
    html = admin_client.get(reverse("job_detail", args=[done.pk])).content.decode()
    assert "hx-trigger" not in html and "inserted" in html


def test_cancel_and_retry_from_the_job_page(admin_client):
    job = Job.objects.create(kind="import_prompts", status="running")
    admin_client.post(reverse("job_cancel", args=[job.pk]))
    job.refresh_from_db()
    assert job.cancel_requested and job.status == "running"
    failed = Job.objects.create(kind="import_prompts", status="failed", error="x")
    admin_client.post(reverse("job_retry", args=[failed.pk]))
    failed.refresh_from_db()
    assert failed.status == "queued"


def test_model_output_is_escaped_on_the_rollout_list(admin_client, dataset):
    from apps.rollouts.models import Rollout

    add_prompts(dataset, 1)
    job = Job.objects.create(kind="generate")
    Rollout.objects.create(job=job, prompt=Prompt.objects.get(), completion="<script>alert('x')</script>")
    html = admin_client.get(reverse("rollout_list")).content.decode()
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    assert admin_client.get(reverse("rollout_list"), {"job": "abc"}).status_code == 400


def test_nested_job_results_show_as_lines(admin_client):
    job = Job.objects.create(kind="rejection_sample", status="succeeded",
                             result={"kept": 3, "dropped": {"incorrect": 12, "truncated": 2}})
    html = admin_client.get(reverse("job_detail", args=[job.pk])).content.decode()
    assert "<dt>incorrect</dt><dd>12</dd><dt>truncated</dt><dd>2</dd>" in html
    assert "{" not in html.split("dropped")[1][:200]


def test_the_home_page_says_what_the_demo_is_still_preparing(admin_client, settings, tmp_path):
    from r1studio.views import preparing_marker

    settings.DATA_DIR = tmp_path
    assert 'id="preparing"' not in admin_client.get("/").content.decode()
    preparing_marker().parent.mkdir(parents=True)
    preparing_marker().write_text("the tiny model (300 format SFT steps)")
    page = admin_client.get("/").content.decode()
    assert "The demo is still preparing the tiny model (300 format SFT steps)." in page
