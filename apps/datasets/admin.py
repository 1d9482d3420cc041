from django.contrib import admin

from apps.datasets.models import BulkAction, Dataset, DatasetVersion, Example, ModelVersion, Prompt


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "created_by", "created_at"]
    search_fields = ["name", "description"]


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "domain", "language", "short_question"]
    list_filter = ["domain", "language"]
    search_fields = ["question"]
    raw_id_fields = ["dataset"]
    show_full_result_count = False

    @admin.display(description="question")
    def short_question(self, obj):
        return obj.question[:100]


@admin.register(Example)
class ExampleAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset", "source", "created_by", "created_at"]
    list_filter = ["source"]
    raw_id_fields = ["dataset", "prompt", "source_rollout", "annotation"]
    show_full_result_count = False


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = ["dataset", "number", "example_count", "content_hash", "created_by", "created_at"]
    readonly_fields = [f.name for f in DatasetVersion._meta.concrete_fields]

    def has_change_permission(self, request, obj=None):
        return False  # frozen versions are immutable


@admin.register(BulkAction)
class BulkActionAdmin(admin.ModelAdmin):
    """Read-only: undo happens on the action's page, where frozen examples are protected."""

    list_display = ["id", "action", "dataset", "user", "status", "created_at", "undone_at"]
    list_filter = ["action", "status"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "stage", "backend", "parent", "produced_by", "step", "created_at"]
    list_filter = ["stage", "backend"]
    search_fields = ["name", "uri"]
    raw_id_fields = ["parent", "produced_by"]
