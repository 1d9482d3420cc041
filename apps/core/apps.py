from pathlib import Path

from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"

    def ready(self):
        from django.apps import apps

        from apps.core.roles import PRODUCT_APPS, ensure_roles

        # Sent after the last product app migrates, when every permission exists.
        last = [config for config in apps.get_app_configs() if config.label in PRODUCT_APPS][-1]
        post_migrate.connect(ensure_roles, sender=last, dispatch_uid="r1studio-roles")
        connection_created.connect(private_sqlite_file, dispatch_uid="r1studio-private-sqlite")


def private_sqlite_file(sender, connection, **kwargs):
    """The embedded SQLite file (and its WAL) holds password hashes and hidden tests: this user only."""
    if connection.vendor != "sqlite":
        return
    name = str(connection.settings_dict["NAME"])
    for path in (Path(name), Path(name + "-wal"), Path(name + "-shm")):
        if path.is_file():
            path.chmod(0o600)
