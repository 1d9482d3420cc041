"""Decontamination: a dataset version checked against imported benchmarks by n-gram overlap, every
match shown to a reviewer, and a new version without the confirmed ones."""
from django.apps import AppConfig


class DecontamConfig(AppConfig):
    name = "apps.decontam"
    label = "decontam"

    def ready(self):
        from apps.decontam import checking  # noqa: F401 (its job kind)
