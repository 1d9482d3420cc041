import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Start a Celery worker for R1 Studio's queues (cpu, gpu)."

    def add_arguments(self, parser):
        parser.add_argument("--queues", default="cpu", help="Comma-separated: cpu, gpu")
        parser.add_argument("--concurrency", type=int, default=1)
        parser.add_argument("--beat", action="store_true", help="Also run the periodic stale-job check")
        parser.add_argument("--loglevel", default="info")

    def handle(self, *args, **opts):
        argv = worker_argv(opts["queues"], opts["concurrency"], opts["beat"], opts["loglevel"])
        os.execvpe(argv[0], argv, worker_env())


def worker_env() -> dict:
    # Torch in several worker processes on few cores: one thread each, or they slow each other 4-5x.
    return {"OMP_NUM_THREADS": "1", **os.environ}


def worker_argv(queues: str, concurrency: int, beat: bool, loglevel: str = "info") -> list[str]:
    argv = [
        sys.executable, "-m", "celery", "-A", "r1studio", "worker",
        "--queues", queues, "--concurrency", str(concurrency), "--loglevel", loglevel,
        "--pool", "prefork",  # tasks run in each child's main thread: math-verify's timeouts need that
    ]
    if beat:
        argv += ["--beat", "--schedule", str(settings.DATA_DIR / "celerybeat-schedule")]
    return argv
