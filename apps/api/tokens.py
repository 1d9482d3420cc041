"""Issuing, checking and revoking API tokens (no HTTP here: the auth class and the pages call these)."""

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.api.models import ApiToken
from apps.core import audit

TOKEN_PATTERN = re.compile(r"^r1_(?P<prefix>[0-9a-f]{8})_(?P<secret>[A-Za-z0-9_-]{20,100})$")
# Writing last_used_at on every request would turn each read into a write; a minute is precise enough.
TOUCH_EVERY = timedelta(seconds=60)


class TokenError(Exception):
    """The presented token cannot be used; `str()` says why, without telling a guesser which prefixes exist."""


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(user, name: str, *, via: str = "web") -> tuple[ApiToken, str]:
    """A new token for `user` and its full text, which is never stored and so can only be shown now."""
    name = name.strip()
    if not name:
        raise ValueError("Give the token a name (what it is for)")
    for _ in range(5):  # an 8-hex-digit prefix collides rarely; try again if it does
        prefix, secret = secrets.token_hex(4), secrets.token_urlsafe(32)
        try:
            with transaction.atomic():
                token = ApiToken.objects.create(user=user, name=name[:100], prefix=prefix, secret_hash=_hash(secret))
        except IntegrityError:
            continue
        audit.record(user, "token.create", token, via=via, name=token.name, prefix=prefix)
        return token, f"r1_{prefix}_{secret}"
    raise RuntimeError("could not find a free token prefix")  # pragma: no cover - 5 collisions in 4 billion


def authenticate(text: str) -> ApiToken:
    """The live token that `text` is, with its user loaded; TokenError if it is malformed, unknown or revoked."""
    match = TOKEN_PATTERN.match(text.strip())
    if not match:
        raise TokenError("Malformed API token: expected r1_<prefix>_<secret>")
    token = ApiToken.objects.select_related("user").filter(prefix=match["prefix"]).first()
    # Compare against a hash even when no row matched, so both failures take the same time.
    expected = token.secret_hash if token else _hash("")
    if not hmac.compare_digest(_hash(match["secret"]), expected) or token is None:
        raise TokenError("Invalid API token")
    if token.revoked_at is not None:
        raise TokenError(f"This API token was revoked at {token.revoked_at:%Y-%m-%d %H:%M} UTC")
    if not token.user.is_active:
        raise TokenError("The token's user account is disabled")
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def revoke(token: ApiToken, user, *, via: str = "web") -> bool:
    """Revoke `token` (idempotent); True if this call revoked it."""
    changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db()
    if changed:
        audit.record(user, "token.revoke", token, via=via, name=token.name, prefix=token.prefix)
    return bool(changed)
