"""De-duplication: exact and near-duplicate examples within and across dataset versions, shown as
clusters and kept or dropped by rule or by a person."""
from django.apps import AppConfig


class DedupConfig(AppConfig):
    name = "apps.dedup"
    label = "dedup"

    def ready(self):
        from apps.dedup import detection  # noqa: F401 (its job kind)
