from django.contrib import admin

from apps.training.models import ModelVersion, StepMetric


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "stage", "backend", "parent", "produced_by", "step", "created_at"]
    list_filter = ["stage", "backend"]
    search_fields = ["name", "uri"]
    raw_id_fields = ["parent", "produced_by"]


@admin.register(StepMetric)
class StepMetricAdmin(admin.ModelAdmin):
    list_display = ["job", "step", "created_at"]
    raw_id_fields = ["job"]
