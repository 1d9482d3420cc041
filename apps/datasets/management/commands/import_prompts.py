import json

from django.core.management.base import BaseCommand

from apps.datasets.cli import dataset_named
from apps.datasets.importing import FieldMappingForm
from apps.jobs import launching


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
        with dataset_named(opts["dataset"], opts["create"]) as dataset:
            params = {name: opts[name] for name in FieldMappingForm.base_fields}
            params |= {"dataset": dataset.pk, "path": opts["path"]}
            job = launching.run_here("import_prompts", params, label=f"Import into {dataset.name}",
                                     enqueue=opts["enqueue"])
            if opts["enqueue"]:
                self.stdout.write(f"job {job.pk} queued")
            else:
                self.stdout.write(json.dumps({"job": job.pk, **job.result}))
