"""Celery tasks: thin wrappers that hand a job id to the runner."""

import os

from celery import shared_task

from apps.jobs.models import Job
from apps.jobs.runner import execute


@shared_task(name="workers.tasks.run_job")
def run_job(job_id: int) -> str:
    return execute(job_id, worker=f"{run_job.request.hostname or 'local'}:{os.getpid()}")


@shared_task(name="workers.tasks.reap_stale_jobs")
def reap_stale_jobs() -> list[int]:
    return Job.fail_stale()
