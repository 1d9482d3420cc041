from django.apps import AppConfig


class DecontamConfig(AppConfig):
    name = "apps.decontam"
    label = "decontam"
