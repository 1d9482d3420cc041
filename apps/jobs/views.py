import csv
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.module_loading import import_string
from django.views.decorators.http import require_POST

from apps.core import audit
from apps.core.pagination import keyset_page
from apps.jobs import kinds
from apps.jobs.models import Job
from apps.rollouts import dashboard
from apps.training.forms import CPU_PRESETS

# Kinds launched from their own pages (an upload, a rollout filter) stay out of the Launch menu.
OWN_PAGE = {"import_prompts", "ingest_rollouts", "bulk_accept", "compose_version"}
LAUNCHABLE = [(name, spec.label) for name, spec in kinds.KINDS.items() if name not in OWN_PAGE]


@permission_required("jobs.view_job", raise_exception=True)
def job_list(request):
    jobs = Job.objects.select_related("created_by")
    status = request.GET.get("status", "")
    if status:
        jobs = jobs.filter(status=status)
    try:
        page = keyset_page(jobs, request.GET.get("after"))
    except ValueError as exc:
        return render(request, "error.html", {"message": str(exc)}, status=400)
    context = {"page": page, "status": status, "statuses": Job.Status.choices, "launchable": LAUNCHABLE}
    return render(request, "jobs/list.html", context)


@permission_required("jobs.view_job", raise_exception=True)
def job_detail(request, pk):
    job = get_object_or_404(Job.objects.select_related("created_by"), pk=pk)
    template = "jobs/_status.html" if request.htmx else "jobs/detail.html"
    return render(request, template, {"job": job})


@require_POST
@permission_required("jobs.cancel_job", raise_exception=True)
def job_cancel(request, pk):
    job = get_object_or_404(Job, pk=pk)
    if job.request_cancel():
        audit.record(request.user, "job.cancel", job)
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


def _params_form(kind):
    """The kind's params form class and its defaults (each field's initial, called if callable)."""
    spec = kinds.KINDS.get(kind)
    if spec is None:
        raise Http404(f"No job kind {kind!r}")
    form_class = import_string(spec.params_form)
    return form_class, kinds.param_defaults(form_class)


def _posted_params(request, form_class) -> dict:
    """The POSTed values, with an unchecked checkbox (which the browser leaves out) sent as False."""
    params = {k: v for k, v in request.POST.dict().items() if k != "csrfmiddlewaretoken"}
    for name, field in form_class.base_fields.items():
        if isinstance(field, forms.BooleanField) and name not in params:
            params[name] = False
    return params


@permission_required("jobs.launch_job", raise_exception=True)
def job_new(request, kind):
    form_class, defaults = _params_form(kind)
    if kind == "import_prompts":
        messages.info(request, "Imports need an uploaded file: open a dataset and use its import page.")
        return redirect("dataset_list")
    status = 200
    if request.method == "POST":
        params = _posted_params(request, form_class)
        form = form_class(data=defaults | params)
        if form.is_valid():
            try:
                job = kinds.launch(kind, params, user=request.user)
            except ValidationError as exc:  # e.g. a row deleted meanwhile
                form.add_error(None, exc)
            else:
                messages.success(request, f"{job.label} queued as job #{job.pk}.")
                return redirect("job_detail", pk=job.pk)
        status = 400
    else:
        preset = CPU_PRESETS.get(kind, {}) if request.GET.get("preset") == "cpu" else {}
        given = {k: v for k, v in request.GET.items() if k in form_class.base_fields}
        form = form_class(initial=defaults | preset | given)
    context = {"form": form, "kind": kind, "spec": kinds.KINDS[kind], "has_preset": kind in CPU_PRESETS}
    return render(request, "jobs/new.html", context, status=status)


@require_POST
@permission_required("jobs.launch_job", raise_exception=True)
def job_preview(request, kind):
    form_class, defaults = _params_form(kind)
    form = form_class(data=defaults | _posted_params(request, form_class))
    # Always 200, even when invalid: htmx swaps only 2xx responses.
    context = {"form": form, "valid": form.is_valid()}
    if context["valid"] and hasattr(form, "preview"):
        context["preview"] = form.preview()
    return render(request, "jobs/_preview.html", context)


def _dashboard_job(request, pk):
    """The job (404 if missing) and the ?min_reward= override; ValueError says what is wrong with it."""
    job = get_object_or_404(Job, pk=pk)
    return job, dashboard.parse_min_reward(request.GET.get("min_reward"))


@permission_required(("jobs.view_job", "rollouts.view_rollout"), raise_exception=True)
def job_dashboard(request, pk):
    try:
        job, min_reward = _dashboard_job(request, pk)
    except ValueError as exc:
        return render(request, "error.html", {"message": str(exc)}, status=400)
    # The override travels on to the JSON the page fetches and to the download links.
    query = "?" + urlencode({"min_reward": min_reward}) if min_reward is not None else ""
    context = {"job": job, "data": dashboard.dashboard_data(job, min_reward), "query": query, "min_reward": min_reward}
    return render(request, "jobs/dashboard.html", context)


@permission_required(("jobs.view_job", "rollouts.view_rollout"), raise_exception=True)
def job_dashboard_data(request, pk):
    try:
        job, min_reward = _dashboard_job(request, pk)
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse(dashboard.dashboard_data(job, min_reward))


@permission_required(("jobs.view_job", "rollouts.view_rollout"), raise_exception=True)
def job_dashboard_csv(request, pk):
    try:
        job, min_reward = _dashboard_job(request, pk)
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain; charset=utf-8")
    header, rows = dashboard.series_rows(dashboard.dashboard_data(job, min_reward))
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="job-{job.pk}-dashboard.csv"'
    writer = csv.writer(response)
    writer.writerow(header)
    writer.writerows(rows)
    return response
