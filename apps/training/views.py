from django.contrib.auth.decorators import permission_required
from django.shortcuts import get_object_or_404, redirect, render

from apps.datasets.models import ModelVersion
from apps.training.comparison import ComparisonError, compare_prompts, evaluation_pair, evaluation_table, metric_rows
from apps.training.pipeline import lineage_root, pipeline_for


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
