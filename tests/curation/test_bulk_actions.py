"""Bulk accept on a rollout filter: the preview count, the job (on a real worker), a second run, undo."""

from urllib.parse import urlencode

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from apps.core.models import AuditEvent
from apps.curation.bulk_actions import (
    describe_filter,
    run_bulk_accept,
    start_bulk_accept,
)
from apps.datasets.models import BulkAction, Dataset, Example, ModelVersion
from apps.datasets.versions import freeze_version
from apps.jobs import kinds, launching
from apps.jobs.models import Job
from apps.jobs.runner import JobCancelled, JobContext, execute
from apps.rollouts.browse import RolloutFilterForm
from tests.conftest import wait_for_job
from tests.rollout_factory import add_prompt, add_rollouts, solved

# The example: every correct rollout with language consistency of at least 0.95.
FILTER = {"correct": "yes", "language_min": "0.95"}


@pytest.fixture
def rollouts(dataset):
    """Ten rollouts; five match FILTER, and two of those five have the same question and completion."""
    job = Job.objects.create(kind="generate", status=Job.Status.SUCCEEDED)
    model = ModelVersion.objects.create(name="rl-step-400", uri="checkpoints/rl-400")
    clips = add_prompt(dataset, "Natalia sold clips to 48 friends in April, and half as many in May. How many?")
    eggs = add_prompt(dataset, "Janet's ducks lay 16 eggs a day. She eats 3. How many are left?", "13")
    first = add_rollouts(job, clips, [solved(), solved(reasoning="48 + 24 = 72"), solved("70"), solved("71"),
                                      solved(reasoning="Half of 48 is 24; 72."), solved(reasoning="unscored")],
                         is_correct=[True, True, True, False, True, None],
                         language_consistency=[0.99, 0.96, 0.90, 0.99, 0.95, 0.99], model_version_id=model.pk)
    # The first and last have the same text: one example, and one "already present".
    second = add_rollouts(job, eggs, [solved("13", "16 - 3 = 13"), solved("13", "16 - 3"), solved("12", "no"),
                                      solved("13", "16 - 3 = 13")],
                          is_correct=[True, True, False, True], language_consistency=[1.0, 0.5, 1.0, 0.97],
                          model_version_id=model.pk)
    return [first[0], first[1], first[4], second[0], second[3]]


def bulk_url(params=FILTER):
    return reverse("rollout_bulk") + "?" + urlencode(params)


@pytest.mark.django_db
def test_the_preview_shows_the_filter_in_words_and_its_exact_count(client, users, rollouts):
    client.force_login(users["reviewer"])
    page = client.get(bulk_url({**FILTER, "sort": "reward", "q": ""}))
    assert page.status_code == 200
    expected = RolloutFilterForm(FILTER)
    assert expected.is_valid()
    assert page.context["count"] == expected.rollouts().count() == 5
    html = page.content.decode()
    assert 'data-count="5"' in html and "Correct: yes" in html and "Language consistency ≥ 0.95" in html
    assert {r.pk for r in page.context["sample"]} == {r.pk for r in rollouts}
    assert 'name="seen_count" value="5"' in html
    assert f'href="{reverse("rollout_list")}?correct=yes&amp;language_min=0.95"' in html
    assert describe_filter({}) == []


@pytest.mark.django_db
def test_a_bad_filter_is_a_400_that_names_the_field(client, users, rollouts):
    client.force_login(users["reviewer"])
    response = client.get(bulk_url({"language_min": "2", "correct": "maybe"}))
    assert response.status_code == 400
    html = response.content.decode()
    assert "<b>language_min</b>" in html and "<b>correct</b>" in html
    response = client.post(bulk_url(), {"dataset": "not a slug!", "seen_count": "5"})
    assert response.status_code == 400 and "dataset: " in response.content.decode()
    assert not BulkAction.objects.exists()


@pytest.mark.django_db
def test_a_changed_count_asks_to_confirm_again(client, users, rollouts):
    client.force_login(users["reviewer"])
    response = client.post(bulk_url(), {"dataset": "candidates", "seen_count": "4"})
    assert response.status_code == 409
    html = response.content.decode()
    assert "The count changed since the preview: 4 then, 5 now" in html
    assert 'name="seen_count" value="5"' in html and 'value="candidates"' in html
    assert not BulkAction.objects.exists() and not Job.objects.filter(kind="bulk_accept").exists()
    response = client.post(bulk_url(), {"dataset": "candidates", "seen_count": "5"})
    action = BulkAction.objects.get()
    assert response.status_code == 302 and response.url == reverse("bulk_detail", args=[action.pk])
    assert action.job.kind == "bulk_accept" and action.job.created_by == users["reviewer"]
    assert action.job.params == {"filters": FILTER, "dataset": "candidates", "bulk_action": action.pk}
    assert action.dataset.description.startswith("Candidate set")


@pytest.mark.django_db
def test_a_viewer_cannot_preview_run_or_undo(client, users, rollouts, dataset):
    client.force_login(users["viewer"])
    assert client.get(bulk_url()).status_code == 403
    assert client.post(bulk_url(), {"dataset": "candidates", "seen_count": "5"}).status_code == 403
    action = BulkAction.objects.create(dataset=dataset, filter_params=FILTER)
    assert client.post(reverse("bulk_undo", args=[action.pk])).status_code == 403
    assert client.get(reverse("bulk_detail", args=[action.pk])).status_code == 200  # reading is allowed
    assert BulkAction.objects.get(pk=action.pk).undone_at is None


@pytest.mark.django_db(transaction=True)
def test_accept_run_again_and_undo_on_a_real_worker(client, users, rollouts, celery_worker):
    client.force_login(users["reviewer"])
    assert client.post(bulk_url(), {"dataset": "candidates", "seen_count": "5"}).status_code == 302
    action = BulkAction.objects.get()
    job = wait_for_job(action.job)
    assert job.status == Job.Status.SUCCEEDED, job.error
    candidates = Dataset.objects.get(name="candidates")
    examples = list(candidates.examples.order_by("source_rollout_id"))
    assert [e.source_rollout_id for e in examples] == [r.pk for r in rollouts[:4]]  # the 5th repeats the 4th
    for example, rollout in zip(examples, rollouts, strict=False):
        assert example.messages == [{"role": "user", "content": rollout.prompt.question},
                                    {"role": "assistant", "content": rollout.completion}]
        assert example.provenance == {"rollout": rollout.pk, "job": rollout.job_id,
                                      "model_version": rollout.model_version_id, "bulk_action": action.pk}
        assert (example.source, example.bulk_action_id, example.created_by) == ("bulk", action.pk, users["reviewer"])
        assert example.prompt_id == rollout.prompt_id
    action.refresh_from_db()
    assert (action.status, action.matched, action.created, action.already_present) == ("done", 5, 4, 1)
    assert job.result["created"] == 4 and job.progress_done == job.progress_total == 5
    run = AuditEvent.objects.get(action="bulk.run")
    assert (run.actor, run.via, run.target_id) == (users["reviewer"], "job", str(action.pk))
    assert run.details["created"] == 4 and run.details["filters"] == FILTER
    page = client.get(reverse("bulk_detail", args=[action.pk])).content.decode()
    assert 'id="bulk-created">4<' in page and 'id="bulk-present">1<' in page and "Undo" in page

    # The same filter again: everything is there already.
    assert client.post(bulk_url(), {"dataset": "candidates", "seen_count": "5"}).status_code == 302
    again = BulkAction.objects.exclude(pk=action.pk).get()
    assert wait_for_job(again.job).status == Job.Status.SUCCEEDED
    again.refresh_from_db()
    assert (again.matched, again.created, again.already_present) == (5, 0, 5)
    assert candidates.examples.count() == 4

    # One example is frozen into a version: the undo leaves it and says where it is.
    frozen = examples[0]
    version = freeze_version(candidates, [frozen])
    response = client.post(reverse("bulk_undo", args=[action.pk]), follow=True)
    html = response.content.decode()
    assert "Removed 3 examples this action made. 1 stayed because frozen versions hold them: candidates v1." in html
    assert list(candidates.examples.all()) == [frozen]
    action.refresh_from_db()
    assert action.undone_by == users["reviewer"] and action.undone_at is not None
    assert action.undo_result == {"removed": 3, "kept": 1,
                                  "versions": [{"id": version.pk, "label": "candidates v1"}]}
    undo = AuditEvent.objects.get(action="bulk.undo")
    assert undo.details == {"removed": 3, "kept": 1, "versions": ["candidates v1"]}
    assert "Undo: remove" not in client.get(reverse("bulk_detail", args=[action.pk])).content.decode()

    response = client.post(reverse("bulk_undo", args=[action.pk]), follow=True)
    assert "already undone" in response.content.decode()
    assert AuditEvent.objects.filter(action="bulk.undo").count() == 1 and candidates.examples.count() == 1


@pytest.mark.django_db
def test_a_cancelled_job_stops_between_chunks_and_says_so(users, rollouts):
    action = start_bulk_accept(FILTER, "candidates", users["reviewer"])
    ctx = JobContext(action.job)
    ctx.cancel_event.set()  # what the heartbeat does when someone presses Cancel
    with pytest.raises(JobCancelled):
        run_bulk_accept(ctx)
    action.refresh_from_db()
    assert (action.status, action.matched, action.created) == ("cancelled", 5, 0)
    assert AuditEvent.objects.get(action="bulk.run").details["status"] == "cancelled"


@pytest.mark.django_db
def test_the_job_kind_alone_records_its_own_action(users, rollouts):
    """Launched without the page (the API, the command line), the job makes its BulkAction itself."""
    job = launching.launch("bulk_accept", {"filters": FILTER, "dataset": "api-set"}, user=users["admin"], enqueue=False)
    assert execute(job.pk, worker="test") == Job.Status.SUCCEEDED
    action = BulkAction.objects.get(job=job)
    assert (action.user, action.dataset.name, action.created, action.status) == (users["admin"], "api-set", 4, "done")
    assert Example.objects.filter(bulk_action=action).count() == 4


@pytest.mark.django_db
def test_bad_job_parameters_name_the_field(dataset):
    with pytest.raises(ValidationError) as error:
        kinds.validate_params("bulk_accept", {"filters": {"language_min": "high"}, "dataset": "x"})
    assert "language_min" in str(error.value.message_dict["filters"])
    with pytest.raises(ValidationError) as error:
        kinds.validate_params("bulk_accept", {"filters": ["correct"], "dataset": "bad name", "bulk_action": 999})
    assert set(error.value.message_dict) == {"filters", "dataset", "bulk_action"}


@pytest.mark.django_db
def test_undo_waits_for_the_job_to_finish(client, users, rollouts):
    action = start_bulk_accept(FILTER, "candidates", users["reviewer"])  # queued, not run
    client.force_login(users["reviewer"])
    response = client.post(reverse("bulk_undo", args=[action.pk]), follow=True)
    assert f"Job #{action.job_id} is still queued" in response.content.decode()
    assert BulkAction.objects.get(pk=action.pk).undone_at is None
    page = client.get(reverse("bulk_detail", args=[action.pk])).content.decode()
    assert "Undo is possible once the job has finished" in page and 'hx-trigger="every 1s"' in page
    assert client.get(reverse("bulk_list")).status_code == 200
