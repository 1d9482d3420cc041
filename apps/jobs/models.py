from datetime import timedelta

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from apps.core.uploads import discard_upload


class Job(models.Model):
    """One unit of background work. This row, not Celery, is the source of truth.

    Every status change is a conditional UPDATE (`filter(status=...).update(...)`)
    and checks that one row changed, so two workers can never run one job.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(max_length=40)
    label = models.CharField(max_length=200, blank=True)
    params = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=20, default="cpu")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress_done = models.BigIntegerField(default=0)
    progress_total = models.BigIntegerField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    log = models.TextField(blank=True, help_text="The last lines the job logged")
    result = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat"),
            models.Index(fields=["kind", "-id"], name="job_kind_recent"),
        ]
        permissions = [("launch_job", "Can launch jobs"), ("cancel_job", "Can cancel and retry jobs")]

    def __str__(self):
        return f"#{self.pk} {self.kind} ({self.status})"

    def get_absolute_url(self):
        return reverse("job_detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def progress_percent(self) -> int | None:
        if not self.progress_total:
            return None
        return min(100, int(100 * self.progress_done / self.progress_total))

    def queue_place(self) -> dict:
        """What a queued job waits for: the queued jobs ahead of it on its queue and the ones running there."""
        same_queue = Job.objects.filter(queue=self.queue)
        return {"ahead": same_queue.filter(status=Job.Status.QUEUED, id__lt=self.pk).count(),
                "running": list(same_queue.filter(status=Job.Status.RUNNING).order_by("id")[:5])}

    def _transition(self, from_statuses, **changes) -> bool:
        """Apply `changes` only if the row is still in one of `from_statuses`."""
        changed = Job.objects.filter(pk=self.pk, status__in=from_statuses).update(**changes)
        self.refresh_from_db()
        return changed == 1

    def claim(self, worker: str) -> bool:
        now = timezone.now()
        return self._transition(
            [self.Status.QUEUED],
            status=self.Status.RUNNING,
            worker=worker,
            started_at=now,
            heartbeat_at=now,
            attempts=models.F("attempts") + 1,
        )

    def finish(self, status: str, **changes) -> bool:
        return self._transition([self.Status.RUNNING], status=status, finished_at=timezone.now(), **changes)

    def request_cancel(self) -> bool:
        """A queued job is cancelled at once; a running one stops at its next batch boundary."""
        if self._transition([self.Status.QUEUED], status=self.Status.CANCELLED, finished_at=timezone.now()):
            discard_upload(self.params.get("path"))  # it ended before it ran: its upload goes now
            return True
        return self._transition([self.Status.RUNNING], cancel_requested=True)

    def requeue(self) -> bool:
        """Put a failed or cancelled job back in the queue; its task resumes idempotently."""
        return self._transition(
            [self.Status.FAILED, self.Status.CANCELLED],
            status=self.Status.QUEUED,
            cancel_requested=False,
            error="",
            traceback="",
            worker="",
            finished_at=None,
        )

    @classmethod
    def fail_stale(cls) -> list[int]:
        """Mark running jobs whose worker stopped heartbeating as failed; return their ids."""
        cutoff = timezone.now() - timedelta(seconds=settings.JOB_STALE_SECONDS)
        running = cls.objects.filter(status=cls.Status.RUNNING, heartbeat_at__lt=cutoff)
        stale = list(running.values_list("pk", flat=True))
        failed = []
        for pk in stale:
            changed = cls.objects.filter(pk=pk, status=cls.Status.RUNNING, heartbeat_at__lt=cutoff).update(
                status=cls.Status.FAILED,
                finished_at=timezone.now(),
                error=f"The worker stopped heartbeating (no heartbeat for over {settings.JOB_STALE_SECONDS:g} s); "
                "it was probably killed. Retry the job to resume it.",
            )
            if changed:
                failed.append(pk)
        return failed
