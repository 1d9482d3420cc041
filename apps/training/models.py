from django.core.exceptions import ValidationError
from django.db import models


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

    def clean(self):
        from workers.generation.factory import api_key_env_error

        if error := api_key_env_error((self.config or {}).get("api_key_env")):
            raise ValidationError({"config": error})

    def __str__(self):
        return self.name

    def lineage(self) -> list["ModelVersion"]:
        """This version and its ancestors, oldest first."""
        chain, node, seen = [], self, set()
        while node is not None and node.pk not in seen:
            seen.add(node.pk)
            chain.append(node)
            node = node.parent
        return chain[::-1]


class StepMetric(models.Model):
    """Scalar metrics of one training or generation step, for curves."""

    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="step_metrics", db_index=False)
    step = models.PositiveIntegerField()
    metrics = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "step"]
        constraints = [models.UniqueConstraint(fields=["job", "step"], name="step_metric_unique")]


class Evaluation(models.Model):
    """One model version on one benchmark dataset: pass@1, pass@k, cons@k and per-prompt results."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="evaluations")
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.CASCADE, related_name="evaluations")
    job = models.OneToOneField("jobs.Job", on_delete=models.CASCADE, related_name="evaluation")
    k = models.PositiveIntegerField()
    temperature = models.FloatField()
    top_p = models.FloatField()
    metrics = models.JSONField(default=dict)  # {"pass@1": .., "pass@k": .., "cons@k": .., "prompts": ..}
    per_prompt = models.JSONField(default=dict)  # {prompt id: {"correct": c, "n": n, "majority_correct": bool}}
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["dataset", "model_version"], name="evaluation_by_benchmark")]

    def __str__(self):
        return f"{self.model_version} on {self.dataset}"
