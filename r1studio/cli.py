"""The `r1studio` console command: Django's management commands under one name.

    r1studio demo                 set up and serve the demo site with a worker
    r1studio import_prompts ...   import a prompt file as a job
    r1studio worker --queues cpu  start a Celery worker
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "r1studio.settings")
    from django.conf import settings
    from django.core.management import execute_from_command_line

    if not settings.DATABASE_URL:  # the embedded SQLite default lives under R1_DATA_DIR
        from apps.core.uploads import private_folder

        private_folder(settings.DATA_DIR)
    execute_from_command_line(["r1studio", *sys.argv[1:]])


if __name__ == "__main__":
    main()
