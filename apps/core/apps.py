from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"

    def ready(self):
        from django.apps import apps

        from apps.core.roles import ensure_roles

        # Sent after the last product app migrates, when every permission exists.
        post_migrate.connect(ensure_roles, sender=apps.get_app_config("curation"), dispatch_uid="r1studio-roles")
