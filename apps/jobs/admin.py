from django.contrib import admin

from apps.jobs.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "progress_done", "progress_total", "created_by", "created_at"]
    list_filter = ["status", "kind", "queue"]
    readonly_fields = ["heartbeat_at", "started_at", "finished_at", "worker", "attempts", "traceback", "log"]
