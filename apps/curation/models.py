from django.conf import settings
from django.db import models


class ReviewQueue(models.Model):
    """Items for people to accept, reject or rewrite, built from a rollout filter or an import."""

    class Source(models.TextChoices):
        FILTER = "filter", "A rollout filter"
        IMPORT = "import", "An import (the rollouts of one ingest job)"

    name = models.CharField(max_length=200, unique=True)
    guidelines = models.TextField(blank=True, help_text="Markdown, shown beside every item")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.FILTER)
    source_filter = models.JSONField(default=dict, blank=True, help_text="The rollout filter it was built from")
    item_limit = models.PositiveIntegerField(null=True, blank=True, help_text="At most this many items")
    overlap = models.PositiveSmallIntegerField(default=1, help_text="Annotators per item")
    seed = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Items spread across prompts in this seed's random order; empty: the filter's own order",
    )
    suggested_tags = models.JSONField(default=list, blank=True, help_text="Tags offered on the review screen")
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
    """One rollout in a queue. Its final verdict comes from agreement or from a reviewer's adjudication.

    `version` guards adjudication the way Annotation.version guards annotating: two reviewers
    deciding the same item cannot overwrite each other without seeing it.
    """

    queue = models.ForeignKey(ReviewQueue, on_delete=models.CASCADE, related_name="items", db_index=False)
    # review_items: how the rollout pages (below curation) find a rollout's annotations without importing this app.
    rollout = models.ForeignKey(
        "rollouts.Rollout", null=True, blank=True, on_delete=models.CASCADE, related_name="review_items"
    )
    prompt = models.ForeignKey("datasets.Prompt", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()
    final_verdict = models.CharField(max_length=16, blank=True, help_text="After adjudication or agreement")
    # The final text of an edited item (cold-start reasoning + summary), whoever wrote it.
    final_reasoning = models.TextField(blank=True)
    final_summary = models.TextField(blank=True)
    final_source = models.CharField(
        max_length=32, blank=True, help_text="original, annotation:<id>, or reviewer (the adjudicator's own edit)"
    )
    adjudicated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    adjudicated_at = models.DateTimeField(null=True, blank=True)
    example = models.ForeignKey(
        "datasets.Example", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The training example an accepted or edited item became",
    )
    version = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["queue", "position"]
        constraints = [
            models.UniqueConstraint(fields=["queue", "position"], name="review_item_position_unique"),
            models.UniqueConstraint(
                fields=["queue", "rollout"], name="review_item_rollout_unique",
                condition=models.Q(rollout__isnull=False),
            ),
        ]

    def __str__(self):
        return f"{self.queue.name} #{self.position}"


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
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Who saved it last (named in a conflict message)",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "annotator"], name="annotation_one_per_annotator")]
        indexes = [models.Index(fields=["annotator", "verdict"], name="annotation_by_annotator")]
        permissions = [("adjudicate", "Can adjudicate disagreements")]

    def __str__(self):
        return f"{self.annotator} on {self.item_id}: {self.verdict}"

    def notes_for(self, user) -> str:
        """Notes are the annotator's private remarks: shown to them and to reviewers and admins (who adjudicate)."""
        return self.notes if self.annotator_id == user.pk or user.has_perm("curation.adjudicate") else ""


class AnnotationRevision(models.Model):
    """Every saved state of an annotation: the provenance of each edit and who made it. Never changed."""

    annotation = models.ForeignKey(Annotation, on_delete=models.CASCADE, related_name="revisions", db_index=False)
    version = models.PositiveIntegerField()
    by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(auto_now_add=True)
    verdict = models.CharField(max_length=16, choices=Annotation.Verdict.choices)
    readability = models.PositiveSmallIntegerField(null=True, blank=True)
    edited_reasoning = models.TextField(blank=True)
    edited_summary = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["annotation", "version"]
        constraints = [
            models.UniqueConstraint(fields=["annotation", "version"], name="annotation_revision_unique"),
        ]
