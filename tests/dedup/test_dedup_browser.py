"""In a real browser: launch a de-duplication from the version page, drop a duplicate, write the clean version."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from apps.datasets.models import DatasetVersion
from apps.dedup.models import ClusterMember, DedupRun
from apps.jobs.models import Job
from apps.jobs.runner import execute
from tests.conftest import wait_for_job
from tests.dedup.conftest import make_version

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_drop_a_duplicate_and_write_the_clean_version(page, dataset, texts, artifacts):
    version = make_version(dataset, [texts["base"], "The answer is 72.", texts["close"], "the answer is 72",
                                     texts["other"]])
    page.goto(reverse("version_detail", args=[version.pk]))
    page.click("#dedup-link")
    page.select_option("select[name=method]", "near")
    page.click("#dedup-form button[type=submit]")
    expect(page.locator("h1")).to_have_text(f"De-duplicate {version}")
    # The job's body, as a worker runs it (or the session's worker, if another test started it, took it).
    job = Job.objects.get(kind="deduplicate")
    execute(job.pk, worker="test")
    wait_for_job(job)

    page.reload()
    page.locator("#dedup-runs a").first.click()
    clusters = page.locator(".dedup-cluster")
    expect(clusters).to_have_count(2)
    expect(page.locator("#run-counts")).to_contain_text("2 clusters; 2 of 5 examples are duplicates")
    run = DedupRun.objects.get()
    near = run.clusters.get(kind="near").members.get(is_representative=False)
    member = page.locator(f"#member-{near.pk}")
    member.get_by_role("button", name="Drop").click()  # htmx swaps the cluster in place
    expect(page.locator(f"#member-{near.pk}")).to_have_attribute("data-keep", "drop")
    expect(page.locator(f"#member-{near.pk} .state")).to_have_text("dropped")
    assert ClusterMember.objects.get(pk=near.pk).keep is False
    page.screenshot(path=str(artifacts / "dedup-clusters.png"), full_page=True)

    page.fill("#write-form input[name=note]", "one near copy dropped")
    page.click("#write-version")
    expect(page.locator("h1")).to_have_text(f"{dataset.name} v2")
    expect(page.locator("body")).to_contain_text("1 of 5 examples dropped")
    clean = DatasetVersion.objects.get(number=2)
    assert clean.example_count == 4 and clean.note.endswith("one near copy dropped")
    assert near.example_id not in set(clean.examples.values_list("pk", flat=True))
