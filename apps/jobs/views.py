
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.core.pagination import keyset_page
from apps.jobs import kinds, launching
from apps.jobs.models import Job
from apps.jobs.shown import launched_by, shown_params


def launchable() -> list[tuple[str, str]]:
    """The Launch menu: kinds launched from their own pages (an upload, a rollout filter) stay out."""
    return [(name, spec.label) for name, spec in kinds.KINDS.items() if not spec.own_page]


@permission_required("jobs.view_job", raise_exception=True)
def job_list(request):
    jobs = Job.objects.select_related("created_by")
    status, kind = request.GET.get("status", ""), request.GET.get("kind", "")
    if status:
        jobs = jobs.filter(status=status)
    if kind:
        jobs = jobs.filter(kind=kind)  # the (kind, -id) index
    try:
        page = keyset_page(jobs, request.GET.get("after"))
    except ValueError as exc:
        return render(request, "error.html", {"message": str(exc)}, status=400)
    _with_launcher(page.items)
    context = {"page": page, "status": status, "statuses": Job.Status.choices, "launchable": launchable(),
               "kind": kind, "kinds": sorted((name, spec.label) for name, spec in kinds.KINDS.items())}
    return render(request, "jobs/list.html", context)


def _with_launcher(jobs) -> None:
    """Set each job's `launched_by` (its user, or "system" and where it came from) in one query for
    the page; the `launched_by` template filter reads it (and looks it up itself where a view did not)."""
    names = launched_by(jobs)
    for job in jobs:
        job.launched_by = names[job.pk]


@permission_required("jobs.view_job", raise_exception=True)
def job_detail(request, pk):
    job = get_object_or_404(Job.objects.select_related("created_by"), pk=pk)
    _with_launcher([job])
    if request.htmx:
        return render(request, "jobs/_status.html", {"job": job})
    return render(request, "jobs/detail.html", {"job": job, "params": shown_params(job)})


@require_POST
@permission_required("jobs.cancel_job", raise_exception=True)
def job_cancel(request, pk):
    job = get_object_or_404(Job, pk=pk)
    if launching.cancel(job, request.user):
        messages.info(request, "Cancel requested." if job.status == Job.Status.RUNNING else "Job cancelled.")
    else:
        messages.warning(request, f"The job is {job.status}; nothing to cancel.")
    return redirect("job_detail", pk=pk)


@require_POST
@permission_required("jobs.cancel_job", raise_exception=True)
def job_retry(request, pk):
    job = get_object_or_404(Job, pk=pk)
    if launching.retry(job, request.user):
        messages.info(request, "Job queued again.")
    else:
        messages.warning(request, f"The job is {job.status}; only failed or cancelled jobs can be retried.")
    return redirect("job_detail", pk=pk)


def _params_form(kind):
    """The kind, its params form class and its defaults (each field's initial, called if callable)."""
    spec = kinds.KINDS.get(kind)
    if spec is None:
        raise Http404(f"No job kind {kind!r}")
    return spec, spec.params_form, kinds.param_defaults(spec.params_form)


def _posted_params(request, form_class) -> dict:
    """The POSTed values, with an unchecked checkbox (which the browser leaves out) sent as False."""
    params = {k: v for k, v in request.POST.dict().items() if k != "csrfmiddlewaretoken"}
    for name, field in form_class.base_fields.items():
        if isinstance(field, forms.BooleanField) and name not in params:
            params[name] = False
    return params


@permission_required("jobs.launch_job", raise_exception=True)
def job_new(request, kind):
    spec, form_class, defaults = _params_form(kind)
    if spec.own_page:
        messages.info(request, spec.own_page_hint or f"{spec.label} is launched from its own page.")
        return redirect(spec.own_page)
    status = 200
    if request.method == "POST":
        params = _posted_params(request, form_class)
        form = form_class(data=defaults | params)
        if form.is_valid():
            try:
                job = launching.launch(kind, params, user=request.user)
            except ValidationError as exc:  # e.g. a row deleted meanwhile
                form.add_error(None, exc)
            else:
                messages.success(request, f"{job.label} queued as job #{job.pk}.")
                return redirect("job_detail", pk=job.pk)
        status = 400
    else:
        preset = spec.presets.get(request.GET.get("preset", ""), {})
        given = {k: v for k, v in request.GET.items() if k in form_class.base_fields}
        form = form_class(initial=defaults | preset | given)
    context = {"form": form, "kind": kind, "spec": spec, "has_preset": "cpu" in spec.presets}
    return render(request, "jobs/new.html", context, status=status)


@require_POST
@permission_required("jobs.launch_job", raise_exception=True)
def job_preview(request, kind):
    _, form_class, defaults = _params_form(kind)
    form = form_class(data=defaults | _posted_params(request, form_class))
    # Always 200, even when invalid: htmx swaps only 2xx responses.
    context = {"form": form, "valid": form.is_valid()}
    if context["valid"] and hasattr(form, "preview"):
        context["preview"] = form.preview()
    return render(request, "jobs/_preview.html", context)
