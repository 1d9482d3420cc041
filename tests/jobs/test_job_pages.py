"""The job list and job page read as people talk: rows named (and linked) instead of ids, a kind
column, and "system" with its origin for a job nobody launched."""

import re

import pytest
from django.urls import reverse

from apps.datasets.models import Example, ModelVersion
from apps.datasets.versions import freeze_version
from apps.jobs import launching
from apps.jobs.models import Job
from apps.rollouts.models import RewardRecipe
from tests.rollout_factory import add_prompt

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(db):
    return ModelVersion.objects.create(name="tiny-base", uri="/models/tiny")


@pytest.fixture
def version(dataset):
    example = Example(dataset=dataset, messages=Example.chat("1+1?", "<think>1+1</think>\n\n2"))
    example.save()
    return freeze_version(dataset, [example])


def cell(html: str, param: str) -> str:
    """The value cell of one parameter on the job page."""
    match = re.search(rf'<td data-param="{param}">(.*?)</td>', html, re.S)
    assert match, f"no row for {param}"
    return match.group(1).strip()


def test_the_job_page_names_and_links_the_rows_its_parameters_point_to(admin_client, users, dataset, model, version):
    add_prompt(dataset, "What is 2 + 2?", "4")
    recipe = RewardRecipe.latest("r1-zero-math")
    generate = launching.launch("generate", {"dataset": dataset.pk, "model_version": model.pk, "recipe": recipe.pk,
                                             "n": 2}, user=users["admin"], enqueue=False)
    html = admin_client.get(reverse("job_detail", args=[generate.pk])).content.decode()
    assert cell(html, "dataset") == f'<a href="/datasets/{dataset.name}/">gsm-mini</a>'
    assert cell(html, "model_version") == f'<a href="/models/{model.pk}/pipeline">tiny-base</a>'
    assert cell(html, "recipe") == f"r1-zero-math v{recipe.version}"  # no page of its own: named, not linked
    assert cell(html, "n") == "2" and cell(html, "capture_tokens") == "no"

    sft = launching.launch("sft", {"model_version": model.pk, "dataset_version": version.pk, "output_name": "sft-out"},
                           user=users["admin"], enqueue=False)
    html = admin_client.get(reverse("job_detail", args=[sft.pk])).content.decode()
    assert cell(html, "dataset_version") == f'<a href="/versions/{version.pk}/">gsm-mini v1</a>'

    score = Job.objects.create(kind="score_rollouts", params={"job": generate.pk, "recipe": recipe.pk + 1000})
    html = admin_client.get(reverse("job_detail", args=[score.pk])).content.decode()
    assert cell(html, "job") == f'<a href="/jobs/{generate.pk}/">#{generate.pk} generate (queued)</a>'
    assert cell(html, "recipe") == f"#{recipe.pk + 1000} (deleted)"  # a row gone since launch


def test_json_parameters_and_results_are_key_value_lists_not_python_reprs(admin_client):
    job = Job.objects.create(kind="bulk_accept", status="succeeded",
                             params={"filters": {"correct": "yes", "job": ["3"]}, "dataset": "cands", "bulk_action": 4},
                             result={"kept": 3, "dropped": {"incorrect": 12}, "names": ["a", "b"]})
    html = admin_client.get(reverse("job_detail", args=[job.pk])).content.decode()
    filters = cell(html, "filters")  # jsonb keeps its own key order
    assert filters.startswith('<dl class="kv-list">') and filters.endswith("</dl>")
    assert "<dt>correct</dt><dd>yes</dd>" in filters and "<dt>job</dt><dd>3</dd>" in filters
    assert "<dt>incorrect</dt><dd>12</dd>" in html and "<td>a, b</td>" in html
    assert "{&#x27;" not in html and "[&#x27;" not in html  # no dict or list repr anywhere


def test_the_job_list_has_a_kind_column_and_filters_by_kind(admin_client):
    generate = Job.objects.create(kind="generate", label="Sample the base")
    grpo = Job.objects.create(kind="grpo", label="R1-Zero run")
    html = admin_client.get(reverse("job_list")).content.decode()
    assert "<th>Kind</th>" in html
    assert '<span title="Generate rollouts">generate</span>' in html and '<span title="GRPO">grpo</span>' in html
    filtered = admin_client.get(reverse("job_list"), {"kind": "grpo"})
    assert [job.pk for job in filtered.context["page"].items] == [grpo.pk]
    assert generate.label not in filtered.content.decode()


def test_a_job_nobody_launched_says_system_and_where_it_came_from(admin_client, users, dataset, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"question": "1+1?", "answer": "2"}\n')
    from_cli = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)}, enqueue=False, via="cli")
    by_admin = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)}, user=users["admin"],
                                enqueue=False)
    unrecorded = Job.objects.create(kind="import_prompts")  # no launch record at all

    html = admin_client.get(reverse("job_list")).content.decode()
    rows = {int(pk): row for pk, row in re.findall(r'<tr><td class="num"><a href="/jobs/(\d+)/">\d+</a>(.*?)</tr>',
                                                    html, re.S)}
    assert '<span class="muted">system (command line)</span>' in rows[from_cli.pk]
    assert "<td>admin_user</td>" in rows[by_admin.pk]
    assert '<span class="muted">system</span>' in rows[unrecorded.pk]
    assert "—" not in "".join(rows.values())

    page = admin_client.get(reverse("job_detail", args=[from_cli.pk])).content.decode()
    assert re.search(r'<td id="launched-by">system \(command line\), ', page)
    home = admin_client.get(reverse("home")).content.decode()
    assert "system (command line)" in home and "admin_user" in home
