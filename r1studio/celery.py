import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "r1studio.settings")

app = Celery("r1studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])
