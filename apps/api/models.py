from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """A per-user API token. Only a hash of its secret is kept: the full token is shown once, when issued.

    The token text is `r1_<prefix>_<secret>`; the prefix finds the row, and stays visible in the
    token list so people can tell their tokens apart.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. 'trainer on node 3'")
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64, help_text="sha256 of the secret, hex")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"{self.name} (r1_{self.prefix}_…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
