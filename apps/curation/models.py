from django.conf import settings
from django.db import models


class ReviewQueue(models.Model):
    """Items for people to accept, reject or rewrite, built from a rollout filter or an import."""

    name = models.CharField(max_length=200, unique=True)
    guidelines = models.TextField(blank=True)
    source_filter = models.JSONField(default=dict, blank=True, help_text="The rollout filter it was built from")
    overlap = models.PositiveSmallIntegerField(default=1, help_text="Annotators per item")
    target_dataset = models.ForeignKey(
        "datasets.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="review_queues"
    )
    annotators = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="review_queues")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return self.name


class ReviewItem(models.Model):
    queue = models.ForeignKey(ReviewQueue, on_delete=models.CASCADE, related_name="items", db_index=False)
    rollout = models.ForeignKey("rollouts.Rollout", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    prompt = models.ForeignKey("datasets.Prompt", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()
    final_verdict = models.CharField(max_length=16, blank=True, help_text="After adjudication or agreement")

    class Meta:
        ordering = ["queue", "position"]
        constraints = [
            models.UniqueConstraint(fields=["queue", "position"], name="review_item_position_unique"),
            models.UniqueConstraint(
                fields=["queue", "rollout"], name="review_item_rollout_unique", condition=models.Q(rollout__isnull=False)
            ),
        ]


class Annotation(models.Model):
    """One annotator's judgement of one item; `version` guards concurrent edits."""

    class Verdict(models.TextChoices):
        PENDING = "pending"
        ACCEPT = "accept"
        REJECT = "reject"
        EDIT = "edit"

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="annotations", db_index=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="annotations")
    verdict = models.CharField(max_length=16, choices=Verdict.choices, default=Verdict.PENDING)
    readability = models.PositiveSmallIntegerField(null=True, blank=True, help_text="1 (unreadable) to 5")
    edited_reasoning = models.TextField(blank=True)
    edited_summary = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    notes = models.TextField(blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "annotator"], name="annotation_one_per_annotator")]
        indexes = [models.Index(fields=["annotator", "verdict"], name="annotation_by_annotator")]
        permissions = [("adjudicate", "Can adjudicate disagreements")]
