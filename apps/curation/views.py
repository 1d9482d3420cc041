from django.db.models import Count
from django.shortcuts import render

from apps.curation.models import ReviewQueue


def queue_list(request):
    queues = ReviewQueue.objects.annotate(item_count=Count("items"))
    return render(request, "curation/queues.html", {"queues": queues})
