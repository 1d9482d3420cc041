"""A recipe's judge model, made ready to score: its model version and judge prompt looked up, its client
built, its answers cached in JudgeVerdict rows (workers/rewards/judge.py does the judging).

Every scoring path asks `judge_for(recipe_spec)` and hands what it gets to its ScoringPool: the scoring
job, generation, rejection sampling and evaluation (apps/rollouts/generation.py), POST /api/score.
"""

from django.db.models import Q

from apps.datasets.models import ModelVersion
from apps.rollouts.models import JudgePrompt, JudgeVerdict
from workers.rewards.judge import COMPONENT, Judge, Verdict, make_judge
from workers.rewards.recipes import RecipeError


def judge_spec(recipe_spec: dict) -> tuple[int, dict] | None:
    """(index, component) of the recipe's llm_judge component, or None."""
    for index, component in enumerate(recipe_spec.get("components", ())):
        if component.get("name") == COMPONENT:
            return index, component
    return None


def judge_model(ref) -> ModelVersion | None:
    """The model version a judge param names: its id or its name."""
    lookup = Q(name=str(ref)) | (Q(pk=int(ref)) if str(ref).isdigit() else Q())
    return ModelVersion.objects.filter(lookup).first()


def judge_prompt(params: dict) -> JudgePrompt | None:
    name, version = params.get("prompt", "default"), params.get("prompt_version")
    if version is None:
        return JudgePrompt.latest(name)
    return JudgePrompt.objects.filter(name=name, version=version).first()


def check_judge(recipe_spec: dict) -> None:
    """Raise RecipeError, naming the field, when the recipe's judge model or judge prompt does not exist."""
    found = judge_spec(recipe_spec)
    if found is None:
        return
    index, component = found
    params = component.get("params", {})
    model = judge_model(params["judge"])
    if model is None:
        raise RecipeError(f"components[{index}]: params.judge: no model version {params['judge']!r}")
    if model.backend not in ("openai", "transformers"):
        raise RecipeError(f"components[{index}]: params.judge: {model} has backend {model.backend!r}; "
                          "a judge runs behind an OpenAI-compatible server (openai) or locally (transformers)")
    if judge_prompt(params) is None:
        version = params.get("prompt_version")
        raise RecipeError(f"components[{index}]: params.prompt: no judge prompt {params.get('prompt', 'default')!r}"
                          + (f" version {version}" if version else ""))


class DatabaseCache:
    """JudgeVerdict rows of one judge model and prompt version (workers.rewards.judge.VerdictCache)."""

    def __init__(self, model: ModelVersion, prompt: JudgePrompt):
        self.model, self.prompt = model, prompt

    def get_many(self, keys):
        rows = JudgeVerdict.objects.filter(judge=self.model, prompt=self.prompt, text_hash__in=keys)
        return {row.text_hash: Verdict(row.correct, row.reason, row.output, row.prompt_tokens, row.completion_tokens)
                for row in rows}

    def put_many(self, verdicts):
        JudgeVerdict.objects.bulk_create([
            JudgeVerdict(judge=self.model, prompt=self.prompt, text_hash=key, correct=v.correct, reason=v.reason,
                         output=v.output, prompt_tokens=v.prompt_tokens, completion_tokens=v.completion_tokens)
            for key, v in verdicts.items()], ignore_conflicts=True)  # two jobs judging the same text at once


def judge_settings(recipe_spec: dict) -> dict | None:
    """What workers.rewards.judge.make_judge needs for the recipe's llm_judge component (plain JSON, so the GRPO
    trainer can have it in its spec), or None for a recipe without one. Raises RecipeError when the judge's
    model or prompt is gone."""
    found = judge_spec(recipe_spec)
    if found is None:
        return None
    check_judge(recipe_spec)
    _, component = found
    params = component.get("params", {})
    model, prompt = judge_model(params["judge"]), judge_prompt(params)
    return {"name": model.name, "model_version": model.pk, "backend": model.backend, "uri": model.uri,
            "config": model.config or {}, "prompt_text": prompt.text, "prompt_version": str(prompt),
            "prompt_id": prompt.pk, "domains": component.get("domains", []),
            **{key: params[key] for key in ("concurrency", "timeout_s", "max_tokens") if key in params}}


def judge_for(recipe_spec: dict) -> Judge | None:
    """The Judge a recipe's llm_judge component asks, its answers cached in JudgeVerdict rows; None for a
    recipe without one. Raises RecipeError when its model or prompt is gone, BackendUnavailable when its
    client cannot start."""
    settings = judge_settings(recipe_spec)
    if settings is None:
        return None
    cache = DatabaseCache(ModelVersion.objects.get(pk=settings["model_version"]),
                          JudgePrompt.objects.get(pk=settings["prompt_id"]))
    return make_judge(settings, cache)
