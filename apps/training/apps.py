from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "apps.training"
    label = "training"

    def ready(self):
        from apps.training import evaluation, training  # noqa: F401 (their job kinds)
