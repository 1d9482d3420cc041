from django.contrib.auth.decorators import login_not_required, permission_required
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render

from apps.core.models import AuditEvent
from apps.core.pagination import keyset_page


@login_not_required
def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})


@permission_required("core.view_auditevent", raise_exception=True)
def audit_log(request):
    """Who accepted, edited, froze, exported or launched what: newest first, filtered by action or person."""
    events = AuditEvent.objects.select_related("actor")
    action, actor = request.GET.get("action", "").strip(), request.GET.get("actor", "").strip()
    if action:
        events = events.filter(action__startswith=action)
    if actor:
        events = events.filter(actor__username=actor)
    try:
        page = keyset_page(events, request.GET.get("after"))
    except ValueError as exc:
        return render(request, "error.html", {"message": str(exc)}, status=400)
    actions = AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct()
    context = {"page": page, "action": action, "actor": actor, "actions": actions}
    return render(request, "audit.html", context)
