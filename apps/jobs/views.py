from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.core.pagination import keyset_page
from apps.jobs import kinds
from apps.jobs.models import Job


def job_list(request):
    jobs = Job.objects.select_related("created_by")
    status = request.GET.get("status", "")
    if status:
        jobs = jobs.filter(status=status)
    try:
        page = keyset_page(jobs, request.GET.get("after"))
    except ValueError as exc:
        return render(request, "error.html", {"message": str(exc)}, status=400)
    return render(
        request, "jobs/list.html", {"page": page, "status": status, "statuses": Job.Status.choices}
    )


def job_detail(request, pk):
    job = get_object_or_404(Job.objects.select_related("created_by"), pk=pk)
    template = "jobs/_status.html" if request.htmx else "jobs/detail.html"
    return render(request, template, {"job": job})


@require_POST
@permission_required("jobs.cancel_job", raise_exception=True)
def job_cancel(request, pk):
    job = get_object_or_404(Job, pk=pk)
    if job.request_cancel():
        messages.info(request, "Cancel requested." if job.status == Job.Status.RUNNING else "Job cancelled.")
    else:
        messages.warning(request, f"The job is {job.status}; nothing to cancel.")
    return redirect("job_detail", pk=pk)


@require_POST
@permission_required("jobs.cancel_job", raise_exception=True)
def job_retry(request, pk):
    job = get_object_or_404(Job, pk=pk)
    if kinds.retry(job):
        messages.info(request, "Job queued again.")
    else:
        messages.warning(request, f"The job is {job.status}; only failed or cancelled jobs can be retried.")
    return redirect("job_detail", pk=pk)
