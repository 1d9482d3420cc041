from django.apps import AppConfig


class CurationConfig(AppConfig):
    name = "apps.curation"
    label = "curation"

    def ready(self):
        from apps.curation import bulk_actions, rejection  # noqa: F401 (their job kinds)
