from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render

from apps.core.counting import estimated_count
from apps.datasets.models import Dataset
from apps.jobs.models import Job
from apps.rollouts.models import Rollout


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


@login_not_required
def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})
