from django.shortcuts import get_object_or_404, redirect, render

from apps.training.models import ModelVersion
from apps.training.pipeline import lineage_root, pipeline_for


def model_list(request):
    versions = ModelVersion.objects.select_related("parent", "produced_by")
    return render(request, "training/models.html", {"versions": versions})


def pipeline(request, pk):
    """The R1 stages of a base model; any model of the lineage leads to its base's page."""
    version = get_object_or_404(ModelVersion, pk=pk)
    root = lineage_root(version)
    if root.pk != version.pk:
        return redirect("pipeline", pk=root.pk)
    return render(request, "training/pipeline.html", {"base": root, "stages": pipeline_for(root)})


def evaluation_list(request, pk=None):  # placeholder until the page lands
    from django.http import Http404

    raise Http404("not built yet")


def evaluation_compare(request, pk=None):  # placeholder until the page lands
    from django.http import Http404

    raise Http404("not built yet")
