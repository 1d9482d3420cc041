"""Running one job: claim it, keep its heartbeat, record how it ended.

A daemon thread writes the heartbeat, progress and log tail every
JOB_HEARTBEAT_SECONDS on its own database connection, so they stay visible
even while the job body holds a long transaction, and it picks up a cancel
request, which the job body honours at its next `ctx.check_cancelled()`.
"""

import logging
import sys
import threading
import traceback
from collections import deque

from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.core.uploads import discard_upload
from apps.jobs.kinds import KINDS
from apps.jobs.models import Job

log = logging.getLogger(__name__)

TRACEBACK_TAIL_CHARS = 8000
LOG_TAIL_LINES = 200


class JobCancelled(Exception):
    pass


class JobContext:
    """What a job body sees: its parameters, and ways to report progress and check for cancel."""

    def __init__(self, job: Job):
        self.job = job
        self.params = job.params
        self.done = 0
        self.total = job.progress_total
        self.cancel_event = threading.Event()
        self.live_result: dict = {}  # figures shown on the job page while it runs (tokens/s, ...)
        self._log_lines = deque(job.log.splitlines(), maxlen=LOG_TAIL_LINES)

    def progress(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total

    def advance(self, n: int = 1) -> None:
        self.done += n

    def report(self, **figures) -> None:
        """Update figures shown on the job page while it runs; they are kept in the job's result.
        `stage` (which pass of a job with several is running) is shown beside the progress and dropped
        when the job succeeds."""
        self.live_result = {**self.live_result, **figures}

    def log(self, message: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        self._log_lines.append(f"{stamp} {message}")
        log.info("job %s: %s", self.job.pk, message)

    def log_text(self) -> str:
        return "\n".join(self._log_lines)

    def check_cancelled(self) -> None:
        """Call between batches: raises JobCancelled once someone asked to cancel."""
        if self.cancel_event.is_set():
            raise JobCancelled()

    def snapshot(self) -> dict:
        return {"progress_done": self.done, "progress_total": self.total, "log": self.log_text(),
                "result": self.live_result}


class Heartbeat(threading.Thread):
    def __init__(self, ctx: JobContext):
        super().__init__(name=f"heartbeat-job-{ctx.job.pk}", daemon=True)
        self.ctx = ctx
        self.stopped = threading.Event()

    def run(self):
        try:
            while not self.stopped.wait(settings.JOB_HEARTBEAT_SECONDS):
                self.beat()
        finally:
            connection.close()  # this thread's own connection

    def beat(self):
        job_id = self.ctx.job.pk
        try:
            Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(
                heartbeat_at=timezone.now(), **self.ctx.snapshot()
            )
            if Job.objects.filter(pk=job_id, cancel_requested=True).exists():
                self.ctx.cancel_event.set()
        except Exception:  # a lost beat is retried at the next tick; never kill the job for it
            log.exception("heartbeat for job %s failed", job_id)

    def stop(self):
        self.stopped.set()
        self.join()


def execute(job_id: int, worker: str) -> str:
    """Run job `job_id` if this worker wins the claim; return the status it ended in."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        log.warning("job %s does not exist; nothing to run", job_id)
        return "missing"
    if not job.claim(worker):
        log.info("job %s is %s, not queued; another worker has it or it ended", job_id, job.status)
        return "skipped"
    ctx = JobContext(job)
    heartbeat = Heartbeat(ctx)
    # A CPU-bound job body holds the GIL; at the default 5 ms switch interval each of the
    # heartbeat's socket operations waits a turn and one beat took 4 s. 1 ms keeps beats prompt.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    heartbeat.start()
    outcome = {"error": "", "traceback": ""}
    try:
        ctx.log(f"started on {worker} (attempt {job.attempts})")
        ctx.report(**(KINDS[job.kind].run(ctx) or {}))
        ctx.live_result.pop("stage", None)  # where a running job is; a failed one keeps it, to say where it stopped
        status = Job.Status.SUCCEEDED
        ctx.log("succeeded")
    except JobCancelled:
        status = Job.Status.CANCELLED
        ctx.log("cancelled")
    except Exception as exc:
        status = Job.Status.FAILED
        outcome["error"] = f"{type(exc).__name__}: {exc}"[:10_000]
        outcome["traceback"] = traceback.format_exc()[-TRACEBACK_TAIL_CHARS:]
        ctx.log(f"failed: {outcome['error'][:500]}")
    finally:
        heartbeat.stop()
        sys.setswitchinterval(switch_interval)
    if not job.finish(status, heartbeat_at=timezone.now(), **ctx.snapshot(), **outcome):
        log.warning("job %s was no longer running when it ended (%s); left as %s", job_id, status, job.status)
    # An uploaded input (prompts with their hidden tests) is not kept once its job has ended.
    discard_upload(job.params.get("path"))
    return status
