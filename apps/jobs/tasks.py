"""Celery tasks: thin wrappers that hand a job id to the runner (found by autodiscover_tasks)."""

import os

from celery import shared_task

from apps.jobs.models import Job
from apps.jobs.runner import execute


@shared_task
def run_job(job_id: int) -> str:
    return execute(job_id, worker=f"{run_job.request.hostname or 'local'}:{os.getpid()}")


@shared_task
def reap_stale_jobs() -> list[int]:
    return Job.fail_stale()
