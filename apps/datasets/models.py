from typing import TypedDict

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse

from apps.core.hashing import content_hash
from apps.core.search import search_vector


class Dataset(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        permissions = [
            ("import_prompts", "Can import prompts into a dataset"),
            ("export_dataset", "Can export dataset versions"),
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("dataset_detail", args=[self.name])


class Prompt(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="prompts", db_index=False)
    question = models.TextField()
    reference_answer = models.TextField(blank=True)
    tests = models.JSONField(default=list, blank=True, help_text="Test cases for code prompts")
    domain = models.CharField(max_length=32, default="math")
    language = models.CharField(max_length=16, default="en")
    # False for prompts that need no long reasoning (writing, factual QA, translation, "hello"): generation asks
    # them for a short chain of thought or none, and rejection sampling keeps them without a rule-checked answer.
    reasoning = models.BooleanField(default=True, help_text="False: a non-reasoning prompt (writing, facts, ...)")
    metadata = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Re-importing the same file never doubles a prompt.
            models.UniqueConstraint(fields=["dataset", "content_hash"], name="prompt_unique_in_dataset"),
        ]
        indexes = [
            models.Index(fields=["dataset", "domain"], name="prompt_dataset_domain"),
            GinIndex(search_vector("question"), name="prompt_question_search"),  # Postgres only
        ]

    def __str__(self):
        return self.question[:80]

    @staticmethod
    def hash_for(question: str, reference_answer: str, tests: list) -> str:
        return content_hash({"q": question.strip(), "a": reference_answer.strip(), "t": tests})


class Edit(TypedDict):
    by: str | None  # username
    at: str  # ISO time
    verdict: str
    version: int


class RolloutProvenance(TypedDict, total=False):
    """Example.provenance of an example made from a rollout: the rollout and the run and model that
    sampled it, then how it was chosen (a bulk accept, or a review queue with its edits); an example
    copied into another dataset by compose adds "copied_from" (the example id) to its source's."""

    rollout: int
    job: int
    model_version: int | None
    bulk_action: int
    queue: int
    edits: list[Edit]
    adjudicated_by: str | None
    copied_from: int


class Example(models.Model):
    """A curated training example (chat messages) and where it came from."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="examples", db_index=False)
    messages = models.JSONField(help_text='Chat format: [{"role": ..., "content": ...}, ...]')
    prompt = models.ForeignKey(Prompt, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source_rollout = models.ForeignKey(
        "rollouts.Rollout", null=True, blank=True, on_delete=models.SET_NULL, related_name="examples"
    )
    annotation = models.ForeignKey(
        "curation.Annotation", null=True, blank=True, on_delete=models.SET_NULL, related_name="examples"
    )
    source = models.CharField(max_length=32, default="manual", help_text="rollout, annotation, import, manual")
    # Where the text came from, written when the example is made so an export never joins for it:
    # {"rollout": id, "job": id, "model_version": id, "edits": [{"by": username, "at": iso, "verdict": ...}], ...}
    provenance = models.JSONField(default=dict, blank=True)
    content_hash = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    # The bulk action that made this example: its undo removes exactly these (apps.curation.bulk_actions).
    bulk_action = models.ForeignKey(
        "BulkAction", null=True, blank=True, on_delete=models.SET_NULL, related_name="examples"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset", "content_hash"], name="example_unique_in_dataset"),
        ]

    @staticmethod
    def hash_for(messages: list) -> str:
        return content_hash(messages)

    @staticmethod
    def chat(question: str, answer: str) -> list[dict]:
        """The messages of every example R1 Studio makes: the question, then the assistant's text."""
        return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]

    def save(self, *args, **kwargs):
        self.content_hash = self.hash_for(self.messages)
        super().save(*args, **kwargs)


class ImmutableError(Exception):
    pass


class DatasetVersion(models.Model):
    """A frozen, content-addressed set of examples: what SFT jobs consume."""

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64, db_index=True)
    example_count = models.PositiveIntegerField(default=0)
    examples = models.ManyToManyField(Example, through="DatasetVersionExample", related_name="versions")
    note = models.TextField(blank=True)
    provenance = models.JSONField(default=dict, blank=True, help_text="Sources, proportions, producing job")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="version_number_unique")]
        permissions = [("freeze_version", "Can freeze a dataset version")]

    def __str__(self):
        return f"{self.dataset.name} v{self.number}"

    def get_absolute_url(self):
        return reverse("version_detail", args=[self.pk])

    def ordered_examples(self):
        entries = DatasetVersionExample.objects.filter(version=self).select_related("example").order_by("position")
        return (entry.example for entry in entries.iterator(chunk_size=2000))

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.pop("force_update_frozen", False):
            raise ImmutableError("A dataset version is immutable once frozen; freeze a new one instead")
        super().save(*args, **kwargs)


class DatasetVersionExample(models.Model):
    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, db_index=False)
    example = models.ForeignKey(Example, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "position"], name="version_position_unique"),
            models.UniqueConstraint(fields=["version", "example"], name="version_example_unique"),
        ]


class BulkAction(models.Model):
    """One action on every rollout a browser filter matched (accept into a dataset), and its undo."""

    class Action(models.TextChoices):
        ACCEPT = "accept", "accept into dataset"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    action = models.CharField(max_length=32, choices=Action.choices, default=Action.ACCEPT)
    filter_params = models.JSONField(default=dict, blank=True, help_text="The rollout browser's GET parameters")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="bulk_actions")
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    matched = models.PositiveBigIntegerField(default=0, help_text="Rollouts the filter matched when the job ran")
    processed = models.PositiveBigIntegerField(default=0)
    created = models.PositiveBigIntegerField(default=0, help_text="Examples this action made")
    already_present = models.PositiveBigIntegerField(default=0, help_text="Matched, but the content was there")
    created_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    undo_result = models.JSONField(default=dict, blank=True, help_text="What the undo removed and what it kept")

    class Meta:
        ordering = ["-id"]

    def __str__(self):
        return f"bulk action #{self.pk} ({self.get_action_display()} {self.dataset.name})"

    @property
    def shown_status(self) -> str:
        """The action's status, or its job's where the job ended without saying (a worker that died)."""
        unfinished = self.status in (self.Status.QUEUED, self.Status.RUNNING)
        if unfinished and self.job is not None and self.job.is_finished:
            return self.job.status
        return self.status


class ModelVersion(models.Model):
    """A checkpoint and its lineage: base model → every stage's output."""

    class Stage(models.TextChoices):
        BASE = "base", "Base model"
        R1_ZERO = "r1_zero", "R1-Zero (GRPO on base)"
        COLD_START = "cold_start", "Cold-start SFT"
        REASONING_RL = "reasoning_rl", "Reasoning RL"
        REJECTION_SFT = "rejection_sft", "Rejection sampling + SFT"
        ALL_SCENARIO_RL = "all_scenario_rl", "All-scenario RL"
        DISTILLED = "distilled", "Distilled"
        OTHER = "other", "Other"

    name = models.CharField(max_length=200, unique=True)
    uri = models.CharField(max_length=1000, help_text="Local path, hub id or API model name")
    backend = models.CharField(max_length=20, default="transformers", help_text="transformers, vllm, openai")
    stage = models.CharField(max_length=20, choices=Stage.choices, default=Stage.BASE)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    produced_by = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="model_versions"
    )
    step = models.PositiveIntegerField(null=True, blank=True, help_text="Training step of this checkpoint")
    config = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        db_table = "training_modelversion"  # moved here from the training app; the table kept its name

    def clean(self):
        from workers.generation.factory import api_key_env_error

        if error := api_key_env_error((self.config or {}).get("api_key_env")):
            raise ValidationError({"config": error})

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        """The model's page: its pipeline (the R1 stages of its lineage)."""
        return reverse("pipeline", args=[self.pk])

    @classmethod
    def queue_for(cls, params: dict) -> str:
        """The worker queue of a job on params["model_version"]: gpu for a vLLM model or one set for CUDA."""
        version = cls.objects.filter(pk=params.get("model_version") or None).first()
        if version and (version.backend == "vllm" or version.config.get("transformers", {}).get("device") == "cuda"):
            return "gpu"
        return "cpu"

    def lineage(self) -> list["ModelVersion"]:
        """This version and its ancestors, oldest first."""
        chain, node, seen = [], self, set()
        while node is not None and node.pk not in seen:
            seen.add(node.pk)
            chain.append(node)
            node = node.parent
        return chain[::-1]
