"""The audit log: one call per consequential action (accept, edit, freeze, export, launch, ...)."""

from django.db import models

from apps.core.models import AuditEvent


def record(actor, action: str, target: models.Model | None = None, *, via: str = "web", **details) -> AuditEvent:
    """Write one event. `actor` may be None (a job acting on its own); `details` must be JSON-able."""
    return AuditEvent.objects.create(
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_label=str(target)[:200] if target is not None else "",
        details=details,
        via=via,
    )
