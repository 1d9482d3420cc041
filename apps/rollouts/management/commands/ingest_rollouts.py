"""r1studio ingest_rollouts DATASET FILE [--format jsonl|trl|verl] [--partial] [--model NAME]

Ingests rollouts from another trainer here, in this process (no worker), and prints the result as
JSON. Bad records: every error is printed with its line and field, nothing lands, and the exit code
is 1; with --partial the good records land and the rejected ones are listed in the result.
"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.datasets.cli import dataset_named
from apps.rollouts.ingest import (
    FORMATS,
    IngestFileError,
    IngestValidationError,
    detect_ingest_format,
    ingest_file,
)


class Command(BaseCommand):
    help = "Ingest rollouts (R1 Studio JSONL, TRL completions parquet, verl rollout JSONL) into a dataset."

    def add_arguments(self, parser):
        parser.add_argument("dataset", help="Dataset name: prompts are matched there or created")
        parser.add_argument("path", help="The file, or a folder of TRL completions_*.parquet / verl <step>.jsonl")
        parser.add_argument("--format", choices=FORMATS, default="", help="Default: detected from the file")
        parser.add_argument("--partial", action="store_true",
                            help="Land the good records and list the rejected ones, instead of landing nothing")
        parser.add_argument("--model", default="", help="Name of the model that produced the rollouts")
        parser.add_argument("--create", action="store_true", help="Create the dataset if it does not exist")

    def handle(self, *args, **opts):
        dataset = dataset_named(opts["dataset"], opts["create"])
        path = Path(opts["path"])
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        try:
            fmt = opts["format"] or detect_ingest_format(path)
            result = ingest_file(path, fmt, dataset=dataset, partial=opts["partial"], model_name=opts["model"],
                                 via="cli")
        except (IngestFileError, IngestValidationError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(json.dumps({"format": fmt, **result.as_dict()}, ensure_ascii=False))
