"""r1studio ingest_rollouts DATASET FILE [--format jsonl|trl|verl] [--partial] [--model NAME] [--preview]

Prints the column mapping first (to stderr: what each source column becomes); --preview stops there. Then
ingests rollouts from another trainer as an ingest_rollouts job run in this process (no worker), and
prints the job's result as JSON. Bad records: the errors are printed with their line and field, nothing
lands, and the exit code is 1; with --partial the good records land and the rejected ones are listed.
"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.datasets.cli import dataset_named
from apps.jobs import launching
from apps.rollouts.cli import recipe_named
from apps.rollouts.ingest import FORMATS, IngestFileError, IngestOptionsForm, detect_ingest_format, preview_source
from apps.rollouts.ingest.mappers import VERL_CORRECT_SCORE


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
        parser.add_argument("--reward-columns", default="",
                            help=IngestOptionsForm.base_fields["reward_columns"].help_text)
        parser.add_argument("--force", action="store_true", help=IngestOptionsForm.base_fields["force"].help_text)
        parser.add_argument("--instruction", default="", help=IngestOptionsForm.base_fields["instruction"].help_text)
        parser.add_argument("--correct-recipe", default="",
                            help="A recipe name: " + IngestOptionsForm.base_fields["correct_recipe"].help_text)
        parser.add_argument("--preview", action="store_true",
                            help="Print the column mapping and the first records as they would land; land nothing")
        parser.add_argument("--correct-score", type=float, default=VERL_CORRECT_SCORE,
                            help=IngestOptionsForm.base_fields["correct_score"].help_text)

    def handle(self, *args, **opts):
        path = Path(opts["path"])
        fmt = opts["format"] or detect_ingest_format(path)
        recipe = recipe_named(opts["correct_recipe"]) if opts["correct_recipe"] else None
        try:
            preview = preview_source(path, fmt, instruction=opts["instruction"], correct_score=opts["correct_score"],
                                     reward_columns=opts["reward_columns"], correct_recipe=str(recipe or ""))
        except IngestFileError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(preview.text() + "\n")
        if opts["preview"]:
            self.stdout.write(json.dumps(preview.as_dict(), ensure_ascii=False, default=str))
            return
        with dataset_named(opts["dataset"], opts["create"]) as dataset:
            params = {"dataset": dataset.pk, "path": opts["path"], "format": fmt,
                      "partial": opts["partial"], "model_name": opts["model"], "instruction": opts["instruction"],
                      "correct_score": opts["correct_score"], "force": opts["force"],
                      "reward_columns": opts["reward_columns"], "correct_recipe": recipe and recipe.pk}
            label = f"Ingest {path.name} into {dataset.name}"
            job = launching.run_here("ingest_rollouts", params, label=label)
            result = {"job": job.pk, "format": job.params["format"], **job.result}
            self.stdout.write(json.dumps(result, ensure_ascii=False))
