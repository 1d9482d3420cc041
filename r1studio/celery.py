import os
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "r1studio.settings")

app = Celery("r1studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()  # each installed app's tasks.py


@app.on_after_configure.connect
def make_broker_folder(sender, **kwargs):
    # The filesystem transport of the embedded default needs its folder to exist.
    folder = sender.conf.broker_transport_options.get("data_folder_in")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
