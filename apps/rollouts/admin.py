from django.contrib import admin

from apps.rollouts.models import Rollout


@admin.register(Rollout)
class RolloutAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "step", "sample_index", "total_reward", "is_correct", "format_ok", "finish_reason"]
    list_filter = ["finish_reason", "is_correct", "format_ok"]
    raw_id_fields = ["job", "prompt", "model_version"]
    show_full_result_count = False  # exact counts over millions of rows are slow
