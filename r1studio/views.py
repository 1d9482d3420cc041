"""The home page: what is here and what ran last (it reads every app, so it lives above them)."""

from django.contrib.auth.decorators import permission_required
from django.shortcuts import render

from apps.core.counting import estimated_count
from apps.datasets.models import Dataset
from apps.jobs.models import Job
from apps.rollouts.models import Rollout


@permission_required(("datasets.view_dataset", "rollouts.view_rollout", "jobs.view_job"), raise_exception=True)
def home(request):
    return render(
        request,
        "home.html",
        {
            "dataset_count": Dataset.objects.count(),
            "rollout_estimate": estimated_count(Rollout),
            "recent_jobs": Job.objects.select_related("created_by")[:10],
        },
    )
