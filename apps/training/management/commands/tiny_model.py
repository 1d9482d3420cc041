"""r1studio tiny_model [--name tiny-qwen3] [--sft-steps 300] [--seed 0] [--out DIR] [--tasks arithmetic,countdown]

Builds a tiny Qwen3-style model from the project's synthetic problems (no hub,
no GPU; see workers.generation.tiny), saves it under STORAGE_ROOT/models/NAME
(or --out) and registers it as a ModelVersion: stage "base" without SFT,
"cold_start" with it.

A name that is already registered is an error, checked before anything is
built: a ModelVersion names one checkpoint, and silently reusing or replacing
it would change what earlier runs that point at it trained on. Pass another
--name (or delete the old version).
"""

import json
import re
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from apps.datasets.models import ModelVersion

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # it becomes a folder name: no "/" or ".."
TASKS = ("arithmetic", "countdown")


class Command(BaseCommand):
    help = "Build a tiny local model (tokenizer + Qwen3, optional format SFT) and register it as a ModelVersion."

    def add_arguments(self, parser):
        parser.add_argument("--name", default="tiny-qwen3", help="ModelVersion name (and folder name)")
        parser.add_argument("--sft-steps", type=int, default=300,
                            help="SFT steps that teach the answer format; 0 for a random-init base model")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--out", default=None, help="Folder to save to (default STORAGE_ROOT/models/NAME)")
        parser.add_argument("--tasks", default="arithmetic",
                            help=f"Comma-separated synthetic tasks to train on: {', '.join(TASKS)}")

    def handle(self, *args, **opts):
        name, steps = opts["name"], opts["sft_steps"]
        tasks = tuple(task.strip() for task in opts["tasks"].split(",") if task.strip())
        self.check_arguments(name, steps, tasks)
        out = Path(opts["out"]) if opts["out"] else settings.STORAGE_ROOT / "models" / name
        if out.exists() and any(out.iterdir()):
            raise CommandError(f"{out} is not empty; remove it or pass another --out")

        # Imported here: torch and transformers load only when a model is built.
        from workers.generation.tiny import build_tiny_model

        started = time.monotonic()
        path = build_tiny_model(out, seed=opts["seed"], sft_steps=steps, tasks=tasks).resolve()
        config = json.loads((path / "r1studio.json").read_text())
        stage = ModelVersion.Stage.COLD_START if steps else ModelVersion.Stage.BASE
        try:
            version = ModelVersion.objects.create(
                name=name, uri=str(path), backend="transformers", stage=stage, step=steps or None, config=config
            )
        except IntegrityError:  # registered by someone else while this one was building
            raise CommandError(f"A model named {name!r} was registered meanwhile; the files are in {path}") from None
        self.stdout.write(
            f"Built {name} ({stage}, {config['parameters']:,} parameters) in {time.monotonic() - started:.1f} s\n"
            f"path: {path}\nModelVersion id: {version.pk}"
        )

    def check_arguments(self, name: str, steps: int, tasks: tuple):
        if not NAME.match(name):
            raise CommandError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (it names a folder)")
        if steps < 0:
            raise CommandError("--sft-steps must be 0 or more")
        unknown = [task for task in tasks if task not in TASKS]
        if unknown or not tasks:
            raise CommandError(f"--tasks: unknown {unknown or 'none given'}; choose from {', '.join(TASKS)}")
        existing = ModelVersion.objects.filter(name=name).first()
        if existing:
            raise CommandError(
                f"A model named {name!r} is already registered (id {existing.pk}, {existing.uri}); "
                "pass another --name"
            )
