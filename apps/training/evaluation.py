"""The evaluation job: k samples per benchmark prompt, then pass@1, pass@k and cons@k."""

from django import forms

from apps.datasets.models import ModelVersion
from apps.jobs.kinds import job_kind
from apps.rollouts.generation import SamplingForm, sample_rollouts
from apps.rollouts.models import Rollout
from apps.training.models import Evaluation
from workers.evaluation import majority_answer, pass_at_k
from workers.rewards.accuracy import equivalent


class EvaluateParamsForm(SamplingForm):
    default_recipe = "r1-zero-math"  # pass@k needs correctness
    n = forms.IntegerField(initial=16, min_value=1, max_value=1024, help_text="k: samples per prompt")
    pass_k = forms.IntegerField(initial=8, min_value=1, help_text="The k of pass@k (at most n)")

    def clean(self):
        data = super().clean()
        if data.get("pass_k") and data.get("n") and data["pass_k"] > data["n"]:
            self.add_error("pass_k", "must be at most n")
        return data


@job_kind("evaluate", "Evaluate a model", EvaluateParamsForm, queue=ModelVersion.queue_for)
def run_evaluation(ctx) -> dict:
    params = ctx.params
    sample_rollouts(ctx, params)
    per_prompt = {}
    rollouts = Rollout.objects.filter(job=ctx.job).order_by("prompt_id", "sample_index")
    by_prompt: dict[int, list] = {}
    for rollout in rollouts.only("prompt_id", "is_correct", "rewards"):
        by_prompt.setdefault(rollout.prompt_id, []).append(rollout)
    for prompt_id, samples in by_prompt.items():
        correct = sum(bool(r.is_correct) for r in samples)
        answers = [_extracted(r) for r in samples]
        winner, votes = majority_answer(answers, equivalent)
        per_prompt[str(prompt_id)] = {
            "n": len(samples), "correct": correct,
            "majority_correct": bool(winner is not None and samples[winner].is_correct), "majority_votes": votes,
        }
    prompts = len(per_prompt) or 1
    k = min(params["pass_k"], min((p["n"] for p in per_prompt.values()), default=1))
    metrics = {
        "prompts": len(per_prompt),
        "samples_per_prompt": params["n"],
        "pass@1": sum(p["correct"] / p["n"] for p in per_prompt.values()) / prompts,
        f"pass@{k}": sum(pass_at_k(p["n"], p["correct"], k) for p in per_prompt.values()) / prompts,
        f"cons@{params['n']}": sum(p["majority_correct"] for p in per_prompt.values()) / prompts,
    }
    Evaluation.objects.update_or_create(
        job=ctx.job,
        defaults={"model_version_id": params["model_version"], "dataset_id": params["dataset"], "k": params["n"],
                  "temperature": params["temperature"], "top_p": params["top_p"], "metrics": metrics,
                  "per_prompt": per_prompt},
    )
    ctx.log("; ".join(f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}"
                      for name, value in metrics.items()))
    return metrics


def _extracted(rollout) -> str | None:
    for name in ("math_accuracy", "code_accuracy"):
        if name in (rollout.rewards or {}):
            return rollout.rewards[name].get("details", {}).get("extracted")
    return None
