from django.contrib import admin

from apps.core.models import AuditEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    """For records that are evidence (the audit log, annotation revisions): shown, never edited or deleted."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):

    list_display = ["at", "actor", "action", "target_type", "target_id", "target_label", "via"]
    list_filter = ["action", "via"]
    search_fields = ["target_label", "actor__username", "action"]
    date_hierarchy = "at"
