from django.shortcuts import render

from apps.core.pagination import keyset_page
from apps.rollouts.models import Rollout


def rollout_list(request):
    rollouts = Rollout.objects.select_related("prompt", "job")
    job = request.GET.get("job", "")
    try:
        if job:
            rollouts = rollouts.filter(job_id=int(job))
        page = keyset_page(rollouts, request.GET.get("after"))
    except ValueError:
        return render(request, "error.html", {"message": "job and after must be numbers"}, status=400)
    return render(request, "rollouts/list.html", {"page": page, "job": job})


def rollout_count(request, pk=None):  # placeholder until the page lands
    from django.http import Http404

    raise Http404("not built yet")


def rollout_detail(request, pk=None):  # placeholder until the page lands
    from django.http import Http404

    raise Http404("not built yet")


def rollout_raw(request, pk=None):  # placeholder until the page lands
    from django.http import Http404

    raise Http404("not built yet")


def rollout_group(request, pk=None):  # placeholder until the page lands
    from django.http import Http404

    raise Http404("not built yet")


def rollout_diff(request, pk=None):  # placeholder until the page lands
    from django.http import Http404

    raise Http404("not built yet")
