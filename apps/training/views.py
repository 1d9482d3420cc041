from django.shortcuts import render

from apps.training.models import ModelVersion


def model_list(request):
    versions = ModelVersion.objects.select_related("parent", "produced_by")
    return render(request, "training/models.html", {"versions": versions})
