import pytest
from django.core.exceptions import ValidationError

from apps.datasets.models import Prompt
from apps.jobs import launching
from apps.jobs.models import Job
from apps.jobs.runner import execute
from tests.conftest import wait_for, wait_for_job, write_jsonl
from workers.synthetic import arithmetic_dataset


def unique_prompts(n, seed=0):
    rows = arithmetic_dataset(n, seed=seed)
    for i, row in enumerate(rows):
        row["question"] += f" (case {i})"
    return rows


@pytest.mark.django_db
class TestJobStates:
    def test_only_one_worker_can_claim_a_job(self, dataset, tmp_path):
        path = write_jsonl(tmp_path / "a.jsonl", [])
        job = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)}, enqueue=False)
        other = Job.objects.get(pk=job.pk)
        assert job.claim("worker-a") is True
        assert other.claim("worker-b") is False
        job.refresh_from_db()
        assert (job.status, job.worker, job.attempts) == ("running", "worker-a", 1)

    def test_a_second_delivery_of_the_same_task_does_nothing(self, dataset, tmp_path):
        path = write_jsonl(tmp_path / "a.jsonl", unique_prompts(5))
        job = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)}, enqueue=False)
        assert execute(job.pk, "w1") == "succeeded"
        assert execute(job.pk, "w2") == "skipped"
        assert Prompt.objects.count() == 5

    def test_cancel_of_a_queued_job_is_immediate(self, dataset, tmp_path):
        path = write_jsonl(tmp_path / "a.jsonl", [])
        job = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)}, enqueue=False)
        assert job.request_cancel()
        assert job.status == "cancelled" and job.finished_at is not None
        assert execute(job.pk, "w1") == "skipped"

    def test_invalid_parameters_are_refused_with_the_field_named(self, dataset):
        with pytest.raises(ValidationError) as exc:
            launching.launch("import_prompts", {"dataset": dataset.pk, "path": "/nonexistent/file.jsonl"})
        assert "path" in exc.value.message_dict
        assert "is not a file or folder under an allowed import root" in exc.value.message_dict["path"][0]
        with pytest.raises(ValidationError) as exc:
            launching.launch("import_prompts", {"dataset": 999999, "path": "/tmp"})
        assert "dataset" in exc.value.message_dict
        with pytest.raises(ValidationError) as exc:
            launching.launch("no_such_kind", {})
        assert "kind" in exc.value.message_dict
        assert Job.objects.count() == 0

    def test_a_failure_records_the_error_and_traceback_tail(self, dataset, tmp_path):
        path = write_jsonl(tmp_path / "bad.jsonl", ['{"question": "ok", "answer": "1"}', "{not json"])
        job = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)}, enqueue=False)
        assert execute(job.pk, "w1") == "failed"
        job.refresh_from_db()
        assert "line 2: not valid JSON" in job.error
        assert "Traceback" in job.traceback
        assert job.finished_at is not None

    def test_stale_running_jobs_are_failed_and_fresh_ones_are_not(self, dataset):
        from datetime import timedelta

        from django.utils import timezone

        old = timezone.now() - timedelta(seconds=120)
        stale = Job.objects.create(kind="import_prompts", status="running", heartbeat_at=old)
        fresh = Job.objects.create(kind="import_prompts", status="running", heartbeat_at=timezone.now())
        assert Job.fail_stale() == [stale.pk]
        stale.refresh_from_db()
        fresh.refresh_from_db()
        assert stale.status == "failed" and "stopped heartbeating" in stale.error
        assert fresh.status == "running"

    def test_only_failed_or_cancelled_jobs_can_be_retried(self, dataset):
        done = Job.objects.create(kind="import_prompts", status="succeeded")
        assert not done.requeue()
        failed = Job.objects.create(kind="import_prompts", status="failed", error="boom")
        assert failed.requeue()
        assert (failed.status, failed.error) == ("queued", "")


@pytest.mark.django_db(transaction=True)
class TestJobsOnARealWorker:
    def test_an_import_job_runs_on_the_worker_with_progress(self, celery_worker, dataset, tmp_path):
        path = write_jsonl(tmp_path / "p.jsonl", unique_prompts(3000))
        job = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)})
        wait_for_job(job)
        assert job.status == "succeeded", job.error
        assert job.result == {"records": 3000, "inserted": 3000, "skipped_duplicates": 0}
        assert (job.progress_done, job.progress_total) == (3000, 3000)
        assert job.worker.startswith("test-") and job.heartbeat_at is not None
        assert Prompt.objects.filter(dataset=dataset).count() == 3000

    def test_cancel_is_honoured_between_batches(self, celery_worker, dataset, tmp_path):
        path = write_jsonl(tmp_path / "p.jsonl", unique_prompts(200_000))
        job = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)})
        wait_for(lambda: Job.objects.get(pk=job.pk).progress_done > 0, message="progress")
        assert Job.objects.get(pk=job.pk).request_cancel()
        wait_for_job(job)
        assert job.status == "cancelled"
        assert Prompt.objects.count() == 0

    def test_a_killed_worker_leaves_a_failed_job_and_the_retry_adds_no_duplicates(
        self, celery_worker, start_worker, dataset, tmp_path
    ):
        rows = unique_prompts(200_000)
        path = write_jsonl(tmp_path / "p.jsonl", rows)
        # The session worker is busy with a long import; this one takes the job.
        victim = start_worker(beat=False)
        celery_worker.stop()
        job = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)})
        wait_for(lambda: Job.objects.get(pk=job.pk).progress_done > 0, message="the job to make progress")
        victim.kill()

        start_worker(beat=True)  # its beat runs the periodic stale-job check
        wait_for_job(job, timeout=30)
        assert job.status == "failed"
        assert "stopped heartbeating" in job.error
        assert Prompt.objects.count() == 0  # the import lands whole or not at all

        assert launching.retry(job)
        wait_for_job(job, timeout=90)
        assert job.status == "succeeded", job.error
        assert job.attempts == 2
        assert Prompt.objects.count() == len(rows)

        again = launching.launch("import_prompts", {"dataset": dataset.pk, "path": str(path)})
        wait_for_job(again, timeout=90)
        assert again.result["inserted"] == 0 and again.result["skipped_duplicates"] == len(rows)
        assert Prompt.objects.count() == len(rows)



@pytest.mark.django_db
def test_a_queued_job_says_what_it_waits_for(admin_client):
    running = Job.objects.create(kind="grpo", label="miniature: GRPO", status=Job.Status.RUNNING, queue="cpu")
    first = Job.objects.create(kind="generate", status=Job.Status.QUEUED, queue="cpu")
    second = Job.objects.create(kind="generate", status=Job.Status.QUEUED, queue="cpu")
    Job.objects.create(kind="generate", status=Job.Status.QUEUED, queue="gpu")  # another queue: not ahead
    page = admin_client.get(f"/jobs/{second.pk}/").content.decode()
    assert "waiting for a worker on queue <code>cpu</code>" in page
    assert "1 queued ahead, behind" in page and f"#{running.pk} miniature: GRPO</a> (running)" in page
    assert "next in line, behind" in admin_client.get(f"/jobs/{first.pk}/").content.decode()
