"""Set up and serve the demo: migrate, seed synthetic prompts, start a worker and the web server."""

import json
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand

from apps.core.management.commands.worker import worker_argv, worker_env
from apps.core.roles import ADMIN
from apps.datasets.models import Dataset, ModelVersion
from apps.jobs import launching
from apps.jobs.runner import execute
from apps.rollouts.models import RewardRecipe
from r1studio.views import preparing_marker
from workers.synthetic import arithmetic_dataset

DEMO_DATASET = "arithmetic-demo"


DEMO_MODEL = "tiny-qwen3"


class Command(BaseCommand):
    help = "Set up the demo (SQLite, local broker, synthetic data) and serve it with a worker."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--prompts", type=int, default=500, help="Synthetic prompts to seed")
        parser.add_argument("--sft-steps", type=int, default=300, help="Format SFT steps for the tiny model")
        parser.add_argument("--setup-only", action="store_true", help="Migrate and seed, then exit")
        parser.add_argument("--no-miniature", dest="miniature", action="store_false",
                            help="Do not run R1-Zero in miniature (format SFT, GRPO, pass@1 before and after)")

    def handle(self, *args, **opts):
        self.say("migrating the database")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        username, password = self.ensure_demo_admin()
        self.say(f"seeding {opts['prompts']} synthetic prompts")
        self.seed(opts["prompts"])
        if opts["setup_only"]:
            self.seed_model_and_rollouts(opts["sft_steps"])
            return
        self.serve(opts["host"], opts["port"], username, password, opts["miniature"], opts["sft_steps"])

    def say(self, step: str):
        """The demo's own steps, one line each, so the terminal says what is happening."""
        self.stdout.write(f"==> {step}")
        self.stdout.flush()

    def ensure_demo_admin(self):
        username = os.environ.get("DEMO_USERNAME", "admin")
        password = os.environ.get("DEMO_PASSWORD", "r1studio-demo")
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password(password)
            user.save()
        user.groups.add(Group.objects.get(name=ADMIN))
        return username, password

    def seed(self, n: int):
        dataset, _ = Dataset.objects.get_or_create(
            name=DEMO_DATASET, defaults={"description": "Synthetic multi-step arithmetic with exact answers"}
        )
        if dataset.prompts.exists():
            return
        path = settings.DATA_DIR / "demo" / "arithmetic.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(p) + "\n" for p in arithmetic_dataset(n, seed=0)))
        job = launching.launch(
            "import_prompts", {"dataset": dataset.pk, "path": str(path)}, label="Seed demo prompts", enqueue=False,
            via="cli",
        )
        execute(job.pk, worker="demo-setup")
        job.refresh_from_db()
        self.stdout.write(f"seeded {job.result.get('inserted', 0)} prompts into {DEMO_DATASET}")

    def seed_model_and_rollouts(self, sft_steps: int):
        """The tiny local model, and a generation job for the worker to run once it starts. The pages say
        the model is being prepared while PREPARING_MARKER exists."""
        if ModelVersion.objects.filter(name=DEMO_MODEL).exists():
            return
        marker = preparing_marker()
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"the tiny model ({sft_steps} format SFT steps)")
        self.say(f"building the tiny model ({sft_steps} SFT steps; the site is usable meanwhile)")
        started = time.monotonic()
        try:
            call_command("tiny_model", "--name", DEMO_MODEL, "--sft-steps", str(sft_steps), stdout=self.stdout)
        finally:
            marker.unlink(missing_ok=True)
        self.say(f"tiny model ready in {time.monotonic() - started:.0f} s; sampling it on the worker (see Jobs)")
        launching.launch("generate", {
            "dataset": Dataset.objects.get(name=DEMO_DATASET).pk,
            "model_version": ModelVersion.objects.get(name=DEMO_MODEL).pk,
            "recipe": RewardRecipe.latest("r1-zero-math").pk, "n": 4, "limit": 100, "max_tokens": 64,
        }, label="Demo: sample the tiny model")

    def serve(self, host, port, username, password, miniature: bool, sft_steps: int):
        # Library progress bars and advisories stay out of the terminal (a job's own output is in its log).
        env = {**worker_env(), "PYTHONUNBUFFERED": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}
        self.say("starting the web server and a worker")
        # Two worker processes: a job launched from a form does not wait behind the miniature's long jobs.
        worker = subprocess.Popen(worker_argv("cpu,gpu", concurrency=2, beat=True, loglevel="warning"), env=env)
        web = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "r1studio.wsgi", "--bind", f"{host}:{port}",
             "--workers", "2", "--threads", "4", "--timeout", "120", "--no-control-socket"],
            env=env,
        )
        self.stdout.write(self.style.SUCCESS(f"\nR1 Studio is running at http://{host}:{port}/"))
        self.stdout.write(f"Log in as {username} / {password}   (Ctrl-C stops the web server and the worker)\n")
        helpers = [web, worker]
        try:
            self.seed_model_and_rollouts(sft_steps)
        except BaseException:
            for proc in helpers:
                proc.terminate()
            raise
        if miniature and not ModelVersion.objects.filter(name="miniature-grpo").exists():
            # The chain waits on each job in turn; its jobs show on the Jobs page as they run.
            self.say("running R1-Zero in miniature on the worker (see Jobs)")
            manage = str(settings.BASE_DIR / "manage.py")
            helpers.append(subprocess.Popen([sys.executable, manage, "miniature"], env=env))
        stop = {"now": False}
        signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
        try:
            while not stop["now"] and worker.poll() is None and web.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for proc in helpers:
                if proc.poll() is None:
                    proc.terminate()
            for proc in helpers:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if worker.returncode not in (None, 0, -signal.SIGTERM) or web.returncode not in (None, 0, -signal.SIGTERM):
            raise SystemExit(f"stopped: worker exited {worker.returncode}, web exited {web.returncode}")
