"""Every error the API returns is JSON: {"detail": ...}, with a status that says whose fault it was.

422 bodies have the same shape whether pydantic (the request schema) or a Django form (job parameters,
rollout filters) refused the input: {"detail": [{"loc": [where, field], "msg": ..., "type": ...}]}.
"""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

from apps.jobs.kinds import KINDS

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An error response: `status`, a clear `detail`, and any extra JSON fields (e.g. the missing permission)."""

    def __init__(self, status: int, detail, **extra):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra


def field_errors(error: DjangoValidationError, where: str) -> list[dict]:
    """A Django ValidationError as 422 entries naming each field (`__all__` for errors of the whole input)."""
    if hasattr(error, "error_dict"):
        return [{"loc": [where, field], "msg": message, "type": "value_error"}
                for field, messages in error.message_dict.items() for message in messages]
    return [{"loc": [where], "msg": message, "type": "value_error"} for message in error.messages]


def form_errors(form, where: str) -> list[dict]:
    return [{"loc": [where, field], "msg": message, "type": "value_error"}
            for field, messages in form.errors.items() for message in messages]


def plain_loc(error: dict) -> dict:
    """A pydantic error located as a form's are: ["body", field, ...], never the view's argument name
    ("payload") nor a union's tag (the POST /jobs body is a union tagged by kind: its errors name the field)."""
    loc = list(error["loc"])
    if loc[:2] == ["body", "payload"]:
        loc = ["body", *loc[2:]]
    if len(loc) > 2 and loc[0] == "body" and loc[1] in KINDS and loc[2] in ("kind", "params", "label"):
        del loc[1]
    if error.get("type") in ("union_tag_invalid", "union_tag_not_found"):  # the tag itself is wrong or missing
        loc.append(str(error.get("ctx", {}).get("discriminator", "")).strip("'"))
    return {**error, "loc": loc}


def install(api) -> None:
    """Register the handlers on `api` (a NinjaAPI)."""

    def respond(request, status, body):
        return api.create_response(request, body, status=status)

    @api.exception_handler(ApiError)
    def api_error(request, exc):
        return respond(request, exc.status, {"detail": exc.detail, **exc.extra})

    @api.exception_handler(AuthenticationError)
    def unauthenticated(request, exc):
        response = respond(request, 401, {"detail": str(exc)})
        response["WWW-Authenticate"] = 'Bearer realm="r1studio"'
        return response

    @api.exception_handler(HttpError)
    def http_error(request, exc):
        return respond(request, exc.status_code, {"detail": str(exc)})

    @api.exception_handler(NinjaValidationError)
    def invalid_request(request, exc):
        upload_error = getattr(request, "upload_error", None)
        if upload_error:  # the upload handler stopped an oversized file: that, not "file missing", is the news
            return respond(request, 413, {"detail": upload_error})
        return respond(request, 422, {"detail": [plain_loc(error) for error in exc.errors]})

    @api.exception_handler(DjangoValidationError)
    def invalid_values(request, exc):
        return respond(request, 422, {"detail": field_errors(exc, "body")})

    @api.exception_handler(PermissionDenied)
    def forbidden(request, exc):
        return respond(request, 403, {"detail": str(exc) or "Permission denied"})

    @api.exception_handler(RequestDataTooBig)
    def too_big(request, exc):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE // (1024 * 1024)
        return respond(request, 413, {"detail": f"The request body is over {limit} MB (R1_MAX_REQUEST_MB): send "
                                                "less per request"})

    @api.exception_handler(SuspiciousOperation)
    def suspicious(request, exc):  # e.g. an upload whose file name is "..": Django's own answer is a 400
        return respond(request, 400, {"detail": f"Bad request: {exc}"})

    @api.exception_handler(Http404)
    def not_found(request, exc):
        return respond(request, 404, {"detail": str(exc) or "Not found"})

    @api.exception_handler(Exception)
    def server_error(request, exc):
        # Still a bug to fix; the client gets JSON rather than an HTML error page, and the log has the traceback.
        logger.exception("API error on %s %s", request.method, request.path)
        return respond(request, 500, {"detail": "Internal server error (logged)"})
