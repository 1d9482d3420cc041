"""The API's pages for people: the token list (create, revoke) and the docs' static files."""

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.api import docs, tokens
from apps.api.models import ApiToken


def token_list(request):
    """GET: the user's tokens. POST: issue one and show its text on this response only (it is never stored)."""
    issued = error = None
    if request.method == "POST":
        try:
            _, issued = tokens.issue_token(request.user, request.POST.get("name", ""))
        except ValueError as exc:
            error = str(exc)
    context = {"tokens": ApiToken.objects.filter(user=request.user), "issued": issued, "error": error}
    return render(request, "api/tokens.html", context, status=400 if error else 200)


@require_POST
def token_revoke(request, pk):
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)  # only your own: others' are a 404
    if tokens.revoke(token, request.user):
        messages.info(request, f"Revoked {token}. Requests with it now get a 401.")
    else:
        messages.warning(request, f"{token} was already revoked.")
    return redirect("api_tokens")


@login_not_required
def docs_asset(request, name):
    return docs.asset(name)
