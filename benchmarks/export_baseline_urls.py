"""The export benchmark's baseline route, beside the project's own: loaded only by the benchmark's gunicorn.

`/bench/versions/<pk>/export-in-memory`: the obvious way to export, the whole version loaded into a
list, each line made with json.dumps, the body joined in memory and sent as one response.
"""

import json

from django.http import HttpResponse
from django.urls import include, path


def export_in_memory(request, pk):
    from apps.datasets.models import DatasetVersionExample

    entries = DatasetVersionExample.objects.filter(version_id=pk).order_by("position")
    rows = list(entries.values_list("example__messages", flat=True))
    body = "".join(json.dumps({"messages": messages}, ensure_ascii=False) + "\n" for messages in rows)
    return HttpResponse(body.encode(), content_type="application/x-ndjson")


urlpatterns = [
    path("bench/versions/<int:pk>/export-in-memory", export_in_memory),
    path("", include("r1studio.urls")),
]
