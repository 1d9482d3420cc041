"""Request checks and response headers that every page gets."""

from django.contrib.auth.models import User
from django.db.models import Q
from django.http import HttpResponseBadRequest
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import render

# What KaTeX, htmx and Chart.js need, all served from our own static files, and nothing more:
# no inline or remote script; inline *styles* because KaTeX positions glyphs with style attributes.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


class CleanInputMiddleware:
    """A NUL byte in a query or form field, or a multipart body without a boundary, is a 400
    naming the problem, before any view or database sees it (Postgres refuses NUL in text).

    The API validates its own input (a 422 in its JSON error shape, naming the field)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            return self.get_response(request)
        try:
            fields = [*request.GET.lists(), *(request.POST.lists() if request.method == "POST" else ())]
        except MultiPartParserError as error:
            return HttpResponseBadRequest(f"The form data cannot be read: {error}", content_type="text/plain")
        for name, values in fields:
            if "\x00" in name or any("\x00" in value for value in values):
                return HttpResponseBadRequest(f"The field {name!r} contains a NUL byte", content_type="text/plain")
        return self.get_response(request)


# Pages a signed-in user with no role may still reach: signing in and out, static files, the
# health check, the admin site (its own staff check) and the API (tokens and a 403 naming the permission).
OPEN_WITHOUT_A_ROLE = ("/accounts/", "/static/", "/healthz", "/admin/", "/api/")


class RoleRequiredMiddleware:
    """A signed-in user in no group (no permission at all) sees one page saying so and whom to
    ask, never data: every page's view_* checks assume a role was given on purpose."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        open_page = request.path.startswith(OPEN_WITHOUT_A_ROLE)
        if user.is_authenticated and not open_page and not user.get_all_permissions():
            admins = User.objects.filter(Q(is_superuser=True) | Q(groups__name="admin"), is_active=True).distinct()
            context = {"admins": admins.order_by("username")[:10], "no_role": True}
            return render(request, "registration/no_role.html", context, status=403)
        return self.get_response(request)
