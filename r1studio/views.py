"""The home page: what is here and what ran last (it reads every app, so it lives above them)."""

from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import permission_required
from django.shortcuts import render

from apps.core.counting import estimated_count
from apps.datasets.models import Dataset
from apps.jobs.models import Job
from apps.jobs.shown import launched_by
from apps.rollouts.models import Rollout


@permission_required(("datasets.view_dataset", "rollouts.view_rollout", "jobs.view_job"), raise_exception=True)
def home(request):
    recent_jobs = list(Job.objects.select_related("created_by")[:10])
    names = launched_by(recent_jobs)  # one query for the table's "By" column
    for job in recent_jobs:
        job.launched_by = names[job.pk]
    return render(
        request,
        "home.html",
        {
            "dataset_count": Dataset.objects.count(),
            "rollout_estimate": estimated_count(Rollout),
            "recent_jobs": recent_jobs,
            "preparing": _preparing(),
        },
    )


def preparing_marker() -> Path:
    """Exists while the demo builds its model (r1studio demo writes it); the home page says so."""
    return settings.DATA_DIR / "demo" / "preparing"


def _preparing() -> str:
    """What the demo is still building, or ""."""
    try:
        return preparing_marker().read_text()
    except OSError:
        return ""
