from django import forms
from django.contrib import admin

from apps.rollouts.models import JudgePrompt, JudgeVerdict, RewardRecipe, Rollout


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


class JudgePromptForm(forms.ModelForm):
    class Meta:
        model = JudgePrompt
        fields = ["name", "text", "description"]

    def clean_text(self):
        from workers.rewards.judge import check_prompt_text

        if problem := check_prompt_text(self.cleaned_data["text"]):
            raise forms.ValidationError(problem)
        return self.cleaned_data["text"]


@admin.register(JudgePrompt)
class JudgePromptAdmin(admin.ModelAdmin):
    """A saved version's text never changes (its verdicts are cached by version): adding a prompt under an
    existing name makes that name's next version."""

    form = JudgePromptForm
    list_display = ["name", "version", "content_hash", "created_by", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        return ["name", "version", "text", "content_hash"] if obj else []

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        saved = JudgePrompt.save_text(obj.name, obj.text, user=request.user, description=obj.description)
        obj.pk, obj.version, obj.content_hash = saved.pk, saved.version, saved.content_hash


@admin.register(JudgeVerdict)
class JudgeVerdictAdmin(admin.ModelAdmin):
    list_display = ["id", "judge", "prompt", "correct", "reason", "created_at"]
    list_filter = ["correct"]
    raw_id_fields = ["judge", "prompt"]
