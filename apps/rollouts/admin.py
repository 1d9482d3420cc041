from django.contrib import admin

from apps.rollouts.models import RewardRecipe, Rollout


@admin.register(Rollout)
class RolloutAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "step", "sample_index", "total_reward", "is_correct", "format_ok", "finish_reason"]
    list_filter = ["finish_reason", "is_correct", "format_ok"]
    raw_id_fields = ["job", "prompt", "model_version"]
    show_full_result_count = False  # exact counts over millions of rows are slow


@admin.register(RewardRecipe)
class RewardRecipeAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "content_hash", "created_by", "created_at"]
    readonly_fields = ["content_hash"]
