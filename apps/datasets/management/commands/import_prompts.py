import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.datasets.models import Dataset
from apps.jobs import kinds
from apps.jobs.runner import execute


class Command(BaseCommand):
    help = "Import prompts from JSONL, CSV, Parquet or a datasets save_to_disk folder, as a job."

    def add_arguments(self, parser):
        parser.add_argument("dataset", help="Dataset name (created with --create)")
        parser.add_argument("path")
        parser.add_argument("--create", action="store_true", help="Create the dataset if it does not exist")
        parser.add_argument("--format", default="", help="jsonl, csv, parquet or hf (default: from the name)")
        parser.add_argument("--split", default="")
        parser.add_argument("--question-field", default="question")
        parser.add_argument("--answer-field", default="answer")
        parser.add_argument("--tests-field", default="tests")
        parser.add_argument("--domain-field", default="domain")
        parser.add_argument("--language-field", default="language")
        parser.add_argument("--default-domain", default="math")
        parser.add_argument("--default-language", default="en")
        parser.add_argument("--metadata-fields", default="*")
        parser.add_argument(
            "--enqueue", action="store_true", help="Hand the job to a worker instead of running it here"
        )

    def handle(self, *args, **opts):
        if opts["create"]:
            dataset, _ = Dataset.objects.get_or_create(name=opts["dataset"])
        else:
            dataset = Dataset.objects.filter(name=opts["dataset"]).first()
            if dataset is None:
                raise CommandError(f"No dataset {opts['dataset']!r}; pass --create to make it")
        params = {k: v for k, v in opts.items() if k in _PARAM_NAMES}
        params |= {"dataset": dataset.pk, "path": opts["path"]}
        try:
            job = kinds.launch("import_prompts", params, label=f"Import into {dataset.name}", enqueue=opts["enqueue"])
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


_PARAM_NAMES = {
    "format", "split", "question_field", "answer_field", "tests_field", "domain_field", "language_field",
    "default_domain", "default_language", "metadata_fields",
}
