from django.shortcuts import get_object_or_404
from ninja import Body, Query, Router, Status

from apps.api.auth import require_perm
from apps.api.errors import ApiError, field_errors
from apps.api.job_params import JobIn, sent_params
from apps.api.paging import page
from apps.api.responses import READ, READ_ONE, WRITE
from apps.api.schemas import ErrorOut, JobOut, JobPage, JobQuery
from apps.jobs import kinds, launching
from apps.jobs.models import Job

router = Router(tags=["jobs"])

JOBS = Job.objects.select_related("created_by")


@router.get("/jobs", response={200: JobPage, **READ}, summary="Jobs, newest first")
def list_jobs(request, query: Query[JobQuery]):
    require_perm(request, "jobs.view_job")
    jobs = JOBS
    if query.status:
        jobs = jobs.filter(status=query.status)
    if query.kind:
        jobs = jobs.filter(kind=query.kind)
    return page(jobs, query.after, query.limit)


@router.get("/jobs/{job_id}", response={200: JobOut, **READ_ONE}, summary="A job: status, progress, result, error")
def get_job(request, job_id: int):
    require_perm(request, "jobs.view_job")
    return get_object_or_404(JOBS, pk=job_id)


@router.post("/jobs", response={201: JobOut, **WRITE}, summary="Launch a job",
             description="Needs `jobs.launch_job`. `kind` names the job kind and decides the shape of `params` "
                         "(each kind's parameters are in the schema). They are validated like the kind's launch "
                         "form; a bad one is a 422 naming it (`loc`: [\"body\", \"params\", field]).")
def launch_job(request, payload: Body[JobIn]):
    require_perm(request, "jobs.launch_job")
    try:
        job = launching.launch(payload.kind, sent_params(payload), user=request.user, label=payload.label,
                               via="api")
    except kinds.ValidationError as exc:
        errors = field_errors(exc, "body")
        for error in errors:  # the form names a parameter; "kind" is the body's own field
            if error["loc"][1:] and error["loc"][1] not in ("kind", "__all__"):
                error["loc"] = ["body", "params", *error["loc"][1:]]
        raise ApiError(422, errors) from None
    return Status(201, get_object_or_404(JOBS, pk=job.pk))


@router.post("/jobs/{job_id}/cancel", response={200: JobOut, 409: ErrorOut, **WRITE}, summary="Cancel a job",
             description="Needs `jobs.cancel_job`. A queued job is cancelled at once; a running one stops at its "
                         "next batch boundary (`cancel_requested` is true until then). A finished job is a 409.")
def cancel_job(request, job_id: int):
    require_perm(request, "jobs.cancel_job")
    job = get_object_or_404(JOBS, pk=job_id)
    if not launching.cancel(job, request.user, via="api"):
        raise ApiError(409, f"The job is {job.status}; nothing to cancel")
    return job
