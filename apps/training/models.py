from django.db import models


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

    model_version = models.ForeignKey("datasets.ModelVersion", on_delete=models.CASCADE, related_name="evaluations")
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
