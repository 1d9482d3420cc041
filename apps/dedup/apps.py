from django.apps import AppConfig


class DedupConfig(AppConfig):
    name = "apps.dedup"
    label = "dedup"
