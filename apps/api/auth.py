"""Bearer-token authentication and the permission check every write endpoint makes."""

from ninja.errors import AuthenticationError
from ninja.security import HttpBearer

from apps.api import tokens
from apps.api.errors import ApiError


class TokenAuth(HttpBearer):
    """`Authorization: Bearer r1_<prefix>_<secret>`; sets request.user to the token's owner."""

    def __call__(self, request):
        header = request.headers.get(self.header, "")
        if not header:
            raise AuthenticationError(message="Authentication required: send 'Authorization: Bearer <API token>'. "
                                              "Create a token at /api/tokens.")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError(message="The Authorization header must be 'Bearer <API token>'")
        return self.authenticate(request, token)

    def authenticate(self, request, token):
        try:
            api_token = tokens.authenticate(token)
        except tokens.TokenError as exc:
            raise AuthenticationError(message=str(exc)) from None
        request.user = api_token.user
        return api_token


def require_perm(request, permission: str) -> None:
    """403 naming `permission` unless the caller's groups grant it."""
    if not request.user.has_perm(permission):
        raise ApiError(403, f"Permission denied: this needs the '{permission}' permission, which your groups "
                            "do not grant", permission=permission)
