from django.contrib import admin

from apps.training.models import StepMetric


@admin.register(StepMetric)
class StepMetricAdmin(admin.ModelAdmin):
    list_display = ["job", "step", "created_at"]
    raw_id_fields = ["job"]
