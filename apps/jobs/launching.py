"""Launching, cancelling and retrying jobs: the one place that creates Job rows, hands them to a
worker and writes their audit records, whether the browser, the API or the command line asks."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db import transaction

from apps.core import audit
from apps.jobs.kinds import KINDS, validate_params
from apps.jobs.models import Job
from apps.jobs.runner import execute
from apps.jobs.tasks import run_job


def launch(kind: str, params: dict, user=None, label: str = "", enqueue: bool = True, via: str = "web") -> Job:
    """Validate, create the Job row (and its audit event) and, after commit, hand its id to a worker."""
    clean = validate_params(kind, params, via)
    job = Job.objects.create(
        kind=kind,
        label=label or KINDS[kind].label,
        params=clean,
        queue=KINDS[kind].queue_for(clean),
        created_by=user if user is not None and user.is_authenticated else None,
    )
    audit.record(user, "job.launch", job, via=via, kind=kind)
    if enqueue:
        transaction.on_commit(lambda: send_to_worker(job))
    return job


def send_to_worker(job: Job) -> None:
    run_job.apply_async(args=[job.pk], queue=job.queue)


def cancel(job: Job, user=None, via: str = "web") -> bool:
    """Cancel a queued job at once, or ask a running one to stop; False (nothing audited) if it has ended."""
    if not job.request_cancel():
        return False
    audit.record(user, "job.cancel", job, via=via)
    return True


def retry(job: Job, user=None, via: str = "web") -> bool:
    """Queue a failed or cancelled job again; its task resumes idempotently."""
    if not job.requeue():
        return False
    audit.record(user, "job.retry", job, via=via)
    transaction.on_commit(lambda: send_to_worker(job))
    return True


def launch_for_form(request, form, kind: str, params: dict, label: str):
    """Launch a job from a page's form: the job, or None with the parameters it refused put on the form."""
    try:
        job = launch(kind, params, user=request.user, label=label)
    except ValidationError as exc:
        for field, errors in exc.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
        return None
    messages.success(request, f"{KINDS[kind].label}: job #{job.pk} queued.")
    return job


def run_here(kind: str, params: dict, label: str = "", enqueue: bool = False) -> Job:
    """A job from the command line, run in this process through the same claim and finish as on a
    worker (or, with `enqueue`, handed to one and returned queued); a refused parameter or a job that
    did not succeed is a CommandError saying why."""
    try:
        job = launch(kind, params, label=label, enqueue=enqueue, via="cli")
    except ValidationError as exc:
        raise CommandError("; ".join(f"{f}: {' '.join(m)}" for f, m in exc.message_dict.items())) from None
    if enqueue:
        return job
    status = execute(job.pk, worker="cli")
    job.refresh_from_db()
    if status != Job.Status.SUCCEEDED:
        raise CommandError(f"job {job.pk} {status}: {job.error}")
    return job
