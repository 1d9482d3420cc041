"""Request checks and response headers that every page gets."""

from django.http import HttpResponseBadRequest
from django.http.multipartparser import MultiPartParserError

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
    naming the problem, before any view or database sees it (Postgres refuses NUL in text)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            fields = [*request.GET.lists(), *(request.POST.lists() if request.method == "POST" else ())]
        except MultiPartParserError as error:
            return HttpResponseBadRequest(f"The form data cannot be read: {error}", content_type="text/plain")
        for name, values in fields:
            if "\x00" in name or any("\x00" in value for value in values):
                return HttpResponseBadRequest(f"The field {name!r} contains a NUL byte", content_type="text/plain")
        return self.get_response(request)
