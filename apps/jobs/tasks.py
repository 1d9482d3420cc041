"""Celery tasks: thin wrappers that hand a job id to the runner (found by autodiscover_tasks)."""

import os

from celery import shared_task
from django.conf import settings

from apps.core.uploads import sweep_stale_uploads as sweep
from apps.jobs.models import Job
from apps.jobs.runner import execute


@shared_task
def run_job(job_id: int) -> str:
    return execute(job_id, worker=f"{run_job.request.hostname or 'local'}:{os.getpid()}")


@shared_task
def reap_stale_jobs() -> list[int]:
    return Job.fail_stale()


@shared_task
def sweep_stale_uploads() -> int:
    unfinished = Job.objects.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING], params__has_key="path")
    return sweep(settings.UPLOAD_MAX_AGE_SECONDS, keep={job.params["path"] for job in unfinished})
