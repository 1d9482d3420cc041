from django.contrib import admin

from apps.core.admin import ReadOnlyAdmin
from apps.curation.models import Annotation, AnnotationRevision, ReviewItem, ReviewQueue


@admin.register(ReviewQueue)
class ReviewQueueAdmin(admin.ModelAdmin):
    list_display = ["name", "source", "overlap", "target_dataset", "created_by", "created_at"]
    filter_horizontal = ["annotators"]


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    list_display = ["id", "queue", "position", "rollout", "final_verdict", "adjudicated_by", "version"]
    raw_id_fields = ["queue", "rollout", "prompt", "example"]


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["id", "item", "annotator", "verdict", "readability", "version", "updated_by", "updated_at"]
    list_filter = ["verdict"]
    raw_id_fields = ["item"]


@admin.register(AnnotationRevision)
class AnnotationRevisionAdmin(ReadOnlyAdmin):
    """Provenance: read-only, like the audit log."""

    list_display = ["annotation", "version", "by", "verdict", "at"]
    raw_id_fields = ["annotation"]
