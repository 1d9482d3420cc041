"""A real Celery worker process for tests, on the same Redis and test database as the test."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class CeleryWorker:
    def __init__(self, database_url: str, log_path: Path, beat: bool = True):
        self.database_url, self.log_path, self.beat = database_url, log_path, beat
        self.proc = None
        self.ready = threading.Event()

    def start(self, timeout: float = 60) -> "CeleryWorker":
        self.ready.clear()
        argv = [sys.executable, "-m", "celery", "-A", "r1studio", "worker", "--queues", "cpu,gpu",
                "--concurrency", "1", "--pool", "prefork", "--loglevel", "info",
                "--hostname", f"test-{os.getpid()}-{time.monotonic_ns()}@%h"]
        if self.beat:
            argv += ["--beat", "--schedule", str(self.log_path.with_suffix(".beat"))]
        env = {**os.environ, "DATABASE_URL": self.database_url, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        # A process group of its own, so kill() reaches the prefork children too.
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        threading.Thread(target=self._pump, daemon=True).start()
        if not self.ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"Celery worker did not start in {timeout}s; see {self.log_path}")
        return self

    def _pump(self):
        with open(self.log_path, "a") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                if " ready." in line:
                    self.ready.set()

    def kill(self):
        """SIGKILL the whole worker: no cleanup, as when a machine dies."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
