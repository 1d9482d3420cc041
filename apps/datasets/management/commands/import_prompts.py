import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.datasets.cli import dataset_named
from apps.datasets.importing import FieldMappingForm
from apps.jobs import launching
from apps.jobs.runner import execute


class Command(BaseCommand):
    help = "Import prompts from JSONL, CSV, Parquet or a datasets save_to_disk folder, as a job."

    def add_arguments(self, parser):
        parser.add_argument("dataset", help="Dataset name (created with --create)")
        parser.add_argument("path")
        parser.add_argument("--create", action="store_true", help="Create the dataset if it does not exist")
        for name, field in FieldMappingForm.base_fields.items():
            parser.add_argument("--" + name.replace("_", "-"), default=field.initial or "", help=field.help_text)
        parser.add_argument(
            "--enqueue", action="store_true", help="Hand the job to a worker instead of running it here"
        )

    def handle(self, *args, **opts):
        dataset = dataset_named(opts["dataset"], opts["create"])
        params = {name: opts[name] for name in FieldMappingForm.base_fields}
        params |= {"dataset": dataset.pk, "path": opts["path"]}
        try:
            job = launching.launch("import_prompts", params, label=f"Import into {dataset.name}",
                                   enqueue=opts["enqueue"], via="cli")
        except ValidationError as exc:
            raise CommandError("; ".join(f"{f}: {' '.join(m)}" for f, m in exc.message_dict.items())) from None
        if opts["enqueue"]:
            self.stdout.write(f"job {job.pk} queued")
            return
        status = execute(job.pk, worker="cli")
        job.refresh_from_db()
        if status != "succeeded":
            raise CommandError(f"job {job.pk} {status}: {job.error}")
        self.stdout.write(json.dumps({"job": job.pk, **job.result}))

