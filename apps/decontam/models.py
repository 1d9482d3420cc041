from django.conf import settings
from django.db import models
from django.urls import reverse


class DecontamCheck(models.Model):
    """One `decontaminate` job: a dataset version checked against benchmark prompt datasets by
    n-gram overlap, its matches, and the clean version written once the matches are reviewed.
    Its primary key is the job's, so the job page and the review page name the same number."""

    job = models.OneToOneField("jobs.Job", primary_key=True, on_delete=models.CASCADE, related_name="decontam_check")
    version = models.ForeignKey("datasets.DatasetVersion", on_delete=models.CASCADE, related_name="+")
    benchmarks = models.ManyToManyField("datasets.Dataset", related_name="+")
    n = models.PositiveSmallIntegerField(help_text="Words per n-gram")
    min_shared = models.PositiveIntegerField(default=1, help_text="Distinct shared n-grams that make a match")
    parts = models.CharField(max_length=16, default="both")
    benchmark_prompts = models.PositiveIntegerField(default=0)
    benchmark_ngrams = models.PositiveBigIntegerField(default=0)
    examples_checked = models.PositiveBigIntegerField(default=0)
    matched_examples = models.PositiveBigIntegerField(default=0)
    match_count = models.PositiveBigIntegerField(default=0)
    seconds = models.FloatField(default=0)
    output_version = models.ForeignKey("datasets.DatasetVersion", null=True, blank=True, on_delete=models.SET_NULL,
                                       related_name="+")
    removed_count = models.PositiveBigIntegerField(default=0)
    written_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    written_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-pk"]

    def __str__(self):
        return f"decontamination check #{self.pk}"

    def get_absolute_url(self):
        return reverse("decontam_check", args=[self.pk])


class Match(models.Model):
    """An example whose prompt or answer shares n-grams with a benchmark prompt, where, and what a
    reviewer decided. Spans are [start, end) character offsets: into the example's part text
    (`apps.decontam.checking.part_text`) and into the benchmark prompt's question."""

    class Part(models.TextChoices):
        PROMPT = "prompt", "prompt (user turns)"
        ANSWER = "answer", "answer (assistant turns)"

    class Decision(models.TextChoices):
        PENDING = "pending"
        CONFIRMED = "confirmed", "confirmed (remove)"
        DISMISSED = "dismissed", "dismissed (keep)"

    decontam_check = models.ForeignKey(DecontamCheck, on_delete=models.CASCADE, related_name="matches")
    example = models.ForeignKey("datasets.Example", on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField(help_text="The example's position in the checked version")
    part = models.CharField(max_length=16, choices=Part.choices)
    benchmark_prompt = models.ForeignKey("datasets.Prompt", on_delete=models.CASCADE, related_name="+")
    shared_ngrams = models.PositiveIntegerField()
    example_spans = models.JSONField(default=list)
    benchmark_spans = models.JSONField(default=list)
    decision = models.CharField(max_length=16, choices=Decision.choices, default=Decision.PENDING)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["decontam_check", "example", "part", "benchmark_prompt"],
                                    name="decontam_match_unique"),
        ]
        indexes = [models.Index(fields=["decontam_check", "decision", "id"], name="decontam_match_decision")]
        permissions = [("decide_match", "Can confirm or dismiss a decontamination match")]

    def __str__(self):
        return f"match #{self.pk} (example {self.example_id} ~ benchmark prompt {self.benchmark_prompt_id})"
