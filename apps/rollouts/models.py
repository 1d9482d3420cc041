from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast

from apps.core.search import stored_search_vector


def reward_component_value(name: str) -> Cast:
    """SQL for `rewards -> name -> value` as a float (NULL where the rollout has no such component)."""
    return Cast(KeyTextTransform("value", KeyTransform(name, "rewards")), models.FloatField())


class RolloutManager(models.Manager):
    """Leaves out the stored search vector, which only the database's own search reads."""

    def get_queryset(self):
        return super().get_queryset().defer("search")


class Rollout(models.Model):
    """One sampled completion for one prompt, with its rewards.

    At R1 scale one RL run is tens of millions of rows, so: a unique key that
    makes a retried batch idempotent, the columns people filter on stored
    (not dug out of JSON), and composite indexes that start with the run so a
    keyset page reads only that run's slice. Partitioning by job is the next
    step past a few hundred million rows (docs/architecture.md).
    """

    class FinishReason(models.TextChoices):
        STOP = "stop"
        LENGTH = "length"
        ERROR = "error"

    # No database-level foreign-key constraints on this fact table: checking three of them
    # per row at commit was a quarter of Postgres's time per rollout in benchmarks/ingest.py.
    # The writers are R1 Studio's own jobs and the validated ingest; Django still cascades deletes.
    job = models.ForeignKey(
        "jobs.Job", on_delete=models.CASCADE, related_name="rollouts", db_index=False, db_constraint=False
    )
    prompt = models.ForeignKey(
        "datasets.Prompt", on_delete=models.CASCADE, related_name="rollouts", db_index=False, db_constraint=False
    )
    model_version = models.ForeignKey(
        "datasets.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="rollouts",
        db_index=False, db_constraint=False,
    )
    step = models.PositiveIntegerField(default=0, help_text="Training step (0 for plain generation)")
    group = models.PositiveIntegerField(default=0, help_text="GRPO group within the step")
    sample_index = models.PositiveIntegerField(default=0)
    prompt_text = models.TextField(blank=True, help_text="The exact rendered prompt")
    completion = models.TextField()
    reasoning = models.TextField(blank=True)
    answer = models.TextField(blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=16, choices=FinishReason.choices, default=FinishReason.STOP)
    total_reward = models.FloatField(null=True, blank=True)
    rewards = models.JSONField(default=dict, blank=True, help_text="{component: {value, weight, details}}")
    advantage = models.FloatField(null=True, blank=True)
    metadata = models.JSONField(
        default=dict, blank=True, help_text="What the source carried beyond these columns (a trainer's log_extra, ...)"
    )
    reward_recipe = models.ForeignKey(
        "rollouts.RewardRecipe", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        db_index=False, db_constraint=False, help_text="The recipe that gave the rewards",
    )
    # Stored copies of what people filter on.
    is_correct = models.BooleanField(null=True, blank=True)
    # The source's own verdict (an ingested log's, an author's label), kept apart from ours: scoring
    # rewrites is_correct, never this, and the browser finds where the two disagree.
    source_correct = models.BooleanField(null=True, blank=True)
    format_ok = models.BooleanField(null=True, blank=True)
    language_consistency = models.FloatField(null=True, blank=True)
    length_chars = models.PositiveIntegerField(default=0)
    has_reflection = models.BooleanField(default=False)
    shape_flags = models.PositiveSmallIntegerField(
        default=0, help_text="Bits of workers.rewards.shape: short reasoning, repeated text, outside the template"
    )
    # Full-text search over the completion (apps.core.search); NULL on SQLite.
    search = models.GeneratedField(
        expression=stored_search_vector("completion"), output_field=SearchVectorField(), db_persist=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = RolloutManager()

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "prompt", "step", "sample_index"], name="rollout_unique_sample"
            ),
        ]
        indexes = [
            models.Index(fields=["job", "step", "id"], name="rollout_job_step"),
            # One run's newest first: without it Postgres walked the whole table backwards by id and
            # dropped other runs' rows (400 ms at 1M rollouts for a run in the middle, benchmarks/ui.py).
            models.Index(fields=["job", "id"], name="rollout_job_recent"),
            models.Index(fields=["job", "total_reward", "id"], name="rollout_job_reward"),
            models.Index(fields=["model_version", "id"], name="rollout_model_recent"),
            models.Index(fields=["prompt", "model_version"], name="rollout_prompt_model"),
            # Postgres only (migration 0006); SQLite searches with LIKE.
            GinIndex(fields=["search"], name="rollout_completion_search"),
        ]

    def __str__(self):
        return f"rollout {self.pk} (job {self.job_id}, step {self.step}, sample {self.sample_index})"


class RolloutTokens(models.Model):
    """A rollout's per-token trace (workers.tokens.TokenTrace), kept beside the rollout, never in it.

    The arrays are little-endian bytes (numpy .tobytes()): int32 ids, float16 log-probabilities and
    entropies, optional top-k alternatives (k ≤ 5), and the bytes of every token named, so the page
    draws tokens without the model's tokenizer. A run of millions of rollouts of thousands of tokens
    is tens of GB of floats: in the rollout table every list page would drag them along. The browser
    reads only the summary columns, through the (job, summary) indexes. Written by
    apps.rollouts.tokens.write_rollouts with the rollouts, skipped on a retry (the primary key is the
    rollout); deleting a rollout (or its job) deletes this row.
    """

    # No database-level constraint, as on Rollout itself: the writers are our own jobs, Django cascades deletes.
    rollout = models.OneToOneField(Rollout, on_delete=models.CASCADE, primary_key=True, related_name="tokens",
                                   db_constraint=False)
    job = models.ForeignKey("jobs.Job", on_delete=models.DO_NOTHING, related_name="+", db_index=False,
                            db_constraint=False, help_text="The rollout's job: the summary indexes start with the run")
    n_tokens = models.PositiveIntegerField()
    token_ids = models.BinaryField(help_text="int32 per token: vocabulary ids, or indices into pieces (vocab_ids off)")
    logprobs = models.BinaryField(help_text="float16 per token: log-probability of the chosen token")
    entropy = models.BinaryField(null=True, help_text="float16 per token, nats (entropy_kind says of what)")
    top_k = models.PositiveSmallIntegerField(default=0)
    top_ids = models.BinaryField(null=True, help_text="int32 n × top_k, -1 where the source gave fewer")
    top_logprobs = models.BinaryField(null=True, help_text="float16 n × top_k")
    pieces = models.BinaryField(help_text="the bytes of every token id named (workers.tokens.pack_pieces)")
    vocab_ids = models.BooleanField(default=True)
    entropy_kind = models.CharField(max_length=16, blank=True,
                                    help_text="sampling, tempered, top_k or source (workers/tokens.py)")
    max_entropy = models.FloatField(null=True, blank=True)
    mean_entropy = models.FloatField(null=True, blank=True, help_text="for the run dashboard's per-step distribution")
    mean_logprob = models.FloatField(null=True, blank=True)
    min_logprob = models.FloatField(null=True, blank=True, help_text="the lowest-probability token's log-probability")

    class Meta:
        indexes = [
            models.Index(fields=["job", "max_entropy", "rollout"], name="tokens_job_max_entropy"),
            models.Index(fields=["job", "mean_logprob", "rollout"], name="tokens_job_mean_logprob"),
            models.Index(fields=["job", "min_logprob", "rollout"], name="tokens_job_min_logprob"),
        ]

    def __str__(self):
        return f"tokens of rollout {self.rollout_id} ({self.n_tokens})"

    def trace(self):
        from workers.tokens import TokenTrace

        return TokenTrace.from_columns(self)


class NamedVersion(models.Model):
    """Something stored by name and content: saving changed content makes the next version, saving the
    same content again returns the version that has it (reward recipes, judge prompts)."""

    name = models.SlugField(max_length=100)
    version = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["name", "-version"]

    def __str__(self):
        return f"{self.name} v{self.version}"

    @classmethod
    def latest(cls, name: str):
        return cls.objects.filter(name=name).order_by("-version").first()

    @classmethod
    def _store(cls, name: str, content_hash: str, user, description: str, **content):
        existing = cls.objects.filter(name=name, content_hash=content_hash).first()
        if existing:
            return existing
        latest = cls.latest(name)
        return cls.objects.create(name=name, version=(latest.version + 1) if latest else 1,
                                  content_hash=content_hash, description=description, created_by=user, **content)


class RewardRecipe(NamedVersion):
    """A stored reward recipe (workers.rewards.recipes); saving a changed spec makes a new version."""

    spec = models.JSONField()

    class Meta(NamedVersion.Meta):
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="recipe_version_unique"),
            models.UniqueConstraint(fields=["name", "content_hash"], name="recipe_content_unique"),
        ]

    def recipe(self):
        from workers.rewards.recipes import Recipe

        return Recipe.from_spec(self.spec)

    @classmethod
    def save_spec(cls, name: str, spec: dict, user=None, description: str = "") -> "RewardRecipe":
        """Validate `spec`; return the version with this content, creating the next version if new."""
        from apps.rollouts.judging import check_judge
        from workers.rewards.recipes import Recipe

        recipe = Recipe.from_spec(spec)  # raises RecipeError naming the bad component field
        check_judge(recipe.to_spec())  # and names a judge model or judge prompt that does not exist
        return cls._store(name, recipe.content_hash, user, description, spec=recipe.to_spec())


class PromptTemplate(models.Model):
    """A custom completion-style template; `{question}` is replaced by the prompt's question."""

    name = models.SlugField(max_length=100, unique=True)
    text = models.TextField()
    created_by = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name

    def clean(self):
        from django.core.exceptions import ValidationError

        from workers.generation.templates import TemplateError, check_template

        try:
            check_template(self.text)
        except TemplateError as exc:
            raise ValidationError({"text": str(exc)}) from None


class JudgePrompt(NamedVersion):
    """A stored judge prompt (workers.rewards.judge): `{prompt}`, `{reference}`, `{completion}` and `{answer}`
    are filled in per sample. Saving changed text makes a new version, as for RewardRecipe; verdicts are
    cached per version, so a changed prompt is asked afresh."""

    text = models.TextField()

    class Meta(NamedVersion.Meta):
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="judge_prompt_version_unique"),
            models.UniqueConstraint(fields=["name", "content_hash"], name="judge_prompt_content_unique"),
        ]

    @classmethod
    def save_text(cls, name: str, text: str, user=None, description: str = "") -> "JudgePrompt":
        """Check `text`; return the version with this text, creating the next version if new.
        Raises ValueError saying what is wrong with the text."""
        from workers.rewards.judge import check_prompt_text, text_hash

        if problem := check_prompt_text(text):
            raise ValueError(problem)
        return cls._store(name, text_hash(text), user, description, text=text)


class JudgeVerdict(models.Model):
    """A judge's answer, cached: one per (judge model, judge prompt version, sha256 of the text it was sent),
    so scoring the same completion again makes no call. Only answers are kept, not timeouts or errors."""

    judge = models.ForeignKey("datasets.ModelVersion", on_delete=models.CASCADE, related_name="+")
    prompt = models.ForeignKey(JudgePrompt, on_delete=models.CASCADE, related_name="verdicts")
    text_hash = models.CharField(max_length=64)
    correct = models.BooleanField(null=True)  # None: the answer held no usable verdict (malformed, refused)
    reason = models.TextField(blank=True)
    output = models.TextField(blank=True)  # the end of the judge's answer
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["judge", "prompt", "text_hash"], name="judge_verdict_unique")]

    def __str__(self):
        return f"{self.judge_id}/{self.prompt_id}/{self.text_hash[:12]}: {self.correct}"
