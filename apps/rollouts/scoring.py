"""The scoring job: re-score a filtered set of rollouts with a reward recipe, across cores."""

import os

from django import forms
from django.db.models import Avg

from apps.datasets.models import ModelVersion
from apps.jobs.kinds import job_kind
from apps.rollouts.judging import judge_for
from apps.rollouts.models import RewardRecipe, Rollout
from apps.rollouts.rows import reward_columns
from workers.rewards.base import Sample
from workers.rewards.pool import ScoringPool

BATCH = 500
SCORED_FIELDS = ["total_reward", "rewards", "is_correct", "format_ok", "language_consistency", "reward_recipe"]


class ScoreParamsForm(forms.Form):
    recipe = forms.ModelChoiceField(queryset=RewardRecipe.objects.all())
    job = forms.IntegerField(required=False, min_value=1, help_text="Only rollouts written by this job")
    model_version = forms.ModelChoiceField(queryset=ModelVersion.objects.all(), required=False)
    step_min = forms.IntegerField(required=False, min_value=0)
    step_max = forms.IntegerField(required=False, min_value=0)
    processes = forms.IntegerField(required=False, min_value=1, max_value=256, help_text="Default: one per core")
    timeout_s = forms.FloatField(initial=30.0, min_value=1.0, max_value=600.0, help_text="Per rollout")

    def clean(self):
        data = super().clean()
        low, high = data.get("step_min"), data.get("step_max")
        if low is not None and high is not None and low > high:
            self.add_error("step_max", "must be at least step_min")
        return data


def filtered_rollouts(params: dict):
    rollouts = Rollout.objects.all()
    if params.get("job"):
        rollouts = rollouts.filter(job_id=params["job"])
    if params.get("model_version"):
        rollouts = rollouts.filter(model_version_id=params["model_version"])
    if params.get("step_min") is not None:
        rollouts = rollouts.filter(step__gte=params["step_min"])
    if params.get("step_max") is not None:
        rollouts = rollouts.filter(step__lte=params["step_max"])
    return rollouts


def sample_for(prompt, completion: str, finish_reason: str = "stop") -> Sample:
    """What the reward functions see of a completion of `prompt` (a Prompt row)."""
    return Sample(
        completion=completion,
        reference=prompt.reference_answer,
        tests=tuple(prompt.tests or ()),
        prompt=prompt.question,
        domain=prompt.domain,
        language=prompt.language,
        finish_reason=finish_reason,
    )


def rescore(rollouts, recipe_row: RewardRecipe, ctx, *, processes: int | None = None, timeout_s: float = 30.0,
            only_correctness: bool = False) -> int:
    """Score `rollouts` with `recipe_row` in batches across processes, reporting progress to the job's `ctx`;
    returns how many were scored. `only_correctness` rewrites is_correct alone, keeping the rewards the
    rollouts came with (an ingest whose source's score does not say right or wrong)."""
    rollouts = rollouts.select_related("prompt").order_by("id")
    processes = processes or os.cpu_count() or 1
    ctx.log(f"scoring with {recipe_row} in {processes} processes" + (" (correctness only)" if only_correctness else ""))
    fields = ["is_correct"] if only_correctness else SCORED_FIELDS
    last_id, scored = 0, 0
    judge = judge_for(recipe_row.spec)
    with ScoringPool(recipe_row.spec, processes=processes, timeout_s=timeout_s, judge=judge) as pool:
        while batch := list(rollouts.filter(id__gt=last_id)[:BATCH]):
            results = pool.map(sample_for(r.prompt, r.completion, r.finish_reason) for r in batch)
            for rollout, result in zip(batch, results):
                if only_correctness:
                    rollout.is_correct = reward_columns(result)["is_correct"]
                    continue
                for name, value in reward_columns(result).items():
                    setattr(rollout, name, value)
                rollout.reward_recipe = recipe_row
            Rollout.objects.bulk_update(batch, fields)
            scored += len(batch)
            last_id = batch[-1].id
            ctx.progress(scored)
            if judge:
                ctx.report(**judge.counts.figures())
            ctx.check_cancelled()
    return scored


@job_kind("score_rollouts", "Score rollouts", ScoreParamsForm, queue=ModelVersion.queue_for)
def run_scoring(ctx) -> dict:
    params = ctx.params
    recipe_row = RewardRecipe.objects.get(pk=params["recipe"])
    rollouts = filtered_rollouts(params)
    ctx.progress(0, rollouts.count())
    scored = rescore(rollouts, recipe_row, ctx, processes=params.get("processes"),
                     timeout_s=params.get("timeout_s") or 30.0)
    summary = filtered_rollouts(params).filter(reward_recipe=recipe_row).aggregate(mean_reward=Avg("total_reward"))
    correct = filtered_rollouts(params).filter(reward_recipe=recipe_row, is_correct=True).count()
    return {"scored": scored, "mean_reward": summary["mean_reward"], "correct": correct, "recipe": str(recipe_row)}
