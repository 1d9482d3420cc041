import csv
from urllib.parse import urlencode

from django.contrib.auth.decorators import permission_required
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render

from apps.datasets.models import ModelVersion
from apps.jobs.models import Job
from apps.training import dashboard
from apps.training.comparison import ComparisonError, compare_prompts, evaluation_pair, evaluation_table, metric_rows
from apps.training.pipeline import lineage_root, pipeline_for
from workers.training.health import MIN_STEPS


@permission_required("datasets.view_modelversion", raise_exception=True)
def model_list(request):
    versions = ModelVersion.objects.select_related("parent", "produced_by")
    return render(request, "training/models.html", {"versions": versions})


@permission_required(("datasets.view_modelversion", "jobs.view_job"), raise_exception=True)
def pipeline(request, pk):
    """The R1 stages of a base model; any model of the lineage leads to its base's page."""
    version = get_object_or_404(ModelVersion, pk=pk)
    root = lineage_root(version)
    if root.pk != version.pk:
        return redirect("pipeline", pk=root.pk)
    return render(request, "training/pipeline.html", {"base": root, "stages": pipeline_for(root)})


@permission_required("training.view_evaluation", raise_exception=True)
def evaluation_list(request):
    """Every checkpoint's pass@1 and cons@k per benchmark; ?dataset=<name> keeps one benchmark."""
    dataset = request.GET.get("dataset", "")
    return render(request, "training/evaluations.html", {"table": evaluation_table(dataset), "dataset": dataset})


@permission_required(("training.view_evaluation", "datasets.view_prompt"), raise_exception=True)
def evaluation_compare(request):
    """Two evaluations of one benchmark: metrics side by side, then the prompts B fixed and broke."""
    try:
        a, b = evaluation_pair(request.GET.get("a"), request.GET.get("b"))
    except ComparisonError as exc:
        return render(request, "training/evaluation_compare.html", {"error": str(exc)}, status=exc.status)
    context = {"a": a, "b": b, "metrics": metric_rows(a, b), "prompts": compare_prompts(a, b)}
    return render(request, "training/evaluation_compare.html", context)


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
    context = {"job": job, "data": dashboard.dashboard_data(job, min_reward), "query": query, "min_reward": min_reward,
               "health_min_steps": MIN_STEPS}
    return render(request, "training/dashboard.html", context)


@permission_required(("jobs.view_job", "rollouts.view_rollout"), raise_exception=True)
def job_health(request, pk):
    """The run-health alerts of a job (a partial: the dashboard and the job page poll it while it runs)."""
    job = get_object_or_404(Job, pk=pk)
    data = dashboard.dashboard_data(job)
    context = {"job": job, "alerts": data["alerts"], "live": data["job"]["live"], "steps": len(data["x"]["values"]),
               "min_steps": MIN_STEPS}
    return render(request, "training/_health.html", context)


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
