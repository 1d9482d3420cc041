from django.contrib import admin

from apps.curation.models import Annotation, ReviewItem, ReviewQueue


@admin.register(ReviewQueue)
class ReviewQueueAdmin(admin.ModelAdmin):
    list_display = ["name", "overlap", "created_by", "created_at"]
    filter_horizontal = ["annotators"]


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    list_display = ["id", "queue", "position", "rollout", "final_verdict"]
    raw_id_fields = ["queue", "rollout", "prompt"]


@admin.register(Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ["id", "item", "annotator", "verdict", "readability", "version", "updated_at"]
    list_filter = ["verdict"]
    raw_id_fields = ["item"]
