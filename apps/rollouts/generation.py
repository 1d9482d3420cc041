"""Sampling rollouts: the generation job, and the loop that rejection sampling and evaluation share.

Rollouts are written batch by batch as they finish, scored with a reward recipe.
A crashed or retried job resumes: prompts that already have all their samples
under this job are skipped, and the unique key (job, prompt, step, sample)
keeps a re-written batch from doubling.
"""

import os
import time
from dataclasses import dataclass, field

from django import forms
from django.db.models import Count

from apps.datasets.models import Dataset, ModelVersion, Prompt
from apps.jobs.kinds import job_kind
from apps.jobs.models import Job
from apps.rollouts.judging import judge_for
from apps.rollouts.models import PromptTemplate, RewardRecipe, Rollout
from apps.rollouts.rows import reward_columns, rollout_row
from apps.rollouts.scoring import sample_for
from apps.rollouts.tokens import TOKENS_KEY, write_rollouts
from workers.generation.base import BackendError, SamplingParams
from workers.generation.factory import api_key_env_error, make_backend
from workers.generation.openai_backend import has_completions_endpoint
from workers.generation.templates import (
    BUILT_IN,
    NON_REASONING_MODES,
    NON_REASONING_TEMPLATES,
    plain_answer,
    render,
    render_non_reasoning,
)
from workers.rewards.pool import ScoringPool
from workers.tokens import MAX_TOP_K


class SamplingForm(forms.Form):
    """What every sampling job asks: which prompts, which model, how to sample and score."""

    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all())
    model_version = forms.ModelChoiceField(queryset=ModelVersion.objects.all())
    template = forms.CharField(max_length=100, initial="r1-zero", help_text="r1-zero, chat, or a saved template")
    recipe = forms.ModelChoiceField(queryset=RewardRecipe.objects.all(), required=False)
    n = forms.IntegerField(initial=1, min_value=1, max_value=1024, help_text="Samples per prompt")
    temperature = forms.FloatField(initial=0.6, min_value=0.0, max_value=2.0)
    top_p = forms.FloatField(initial=0.95, min_value=0.01, max_value=1.0)
    max_tokens = forms.IntegerField(initial=256, min_value=1, max_value=131072)
    seed = forms.IntegerField(initial=0, required=False)
    limit = forms.IntegerField(required=False, min_value=1, help_text="Only the first N prompts")
    batch_size = forms.IntegerField(initial=8, min_value=1, max_value=4096, help_text="Prompts per batch")
    max_batch_retries = forms.IntegerField(initial=3, min_value=0, max_value=20)
    capture_tokens = forms.BooleanField(
        required=False, initial=False, label="Capture tokens",
        help_text=f"Store each token's log-probability, entropy and top {MAX_TOP_K} alternatives (the token lens on "
                  f"the rollout page; about 40 bytes a token): from the model itself, or from an OpenAI-compatible "
                  f"server that returns logprobs")

    # Jobs that judge correctness score with this recipe when none is chosen.
    default_recipe: str | None = None

    def clean(self):
        data = super().clean()
        if not data.get("recipe") and self.default_recipe:
            data["recipe"] = RewardRecipe.latest(default_recipe_for(self.default_recipe, data.get("template")))
        if data.get("model_version") and data.get("template") and not self._server_takes_raw_text(data):
            self.add_error("template", f"{data['model_version'].config.get('base_url')} has no completions "
                                       "endpoint (it answers chat only): choose the chat template")
        return data

    @staticmethod
    def _server_takes_raw_text(data) -> bool:
        """False only when the model's OpenAI-compatible server surely lacks /completions, which a template
        other than chat needs (DeepSeek's API is chat only); an unreachable server is the job's to report."""
        model, config = data["model_version"], data["model_version"].config or {}
        if model.backend != "openai" or data["template"] == "chat" or not config.get("base_url"):
            return True
        key_env = config.get("api_key_env")
        api_key = os.environ.get(key_env) if key_env and not api_key_env_error(key_env) else None
        return has_completions_endpoint(config["base_url"], api_key) is not False

    def preview(self) -> dict:
        """Rows, tokens and time before launching; time from this model's last measured generation speed."""
        data = self.cleaned_data
        prompts = Prompt.objects.filter(dataset=data["dataset"]).count()
        if data.get("limit"):
            prompts = min(prompts, data["limit"])
        rows = prompts * data["n"]
        preview = {"prompts": prompts, "rows (completions, each stored as a rollout)": rows,
                   "tokens to generate (at most)": rows * data["max_tokens"]}
        measured = _last_speed(data["model_version"])
        if measured is None:
            preview["time"] = "unknown until a job has run on this model (its speed is measured then)"
            return preview
        per_s, per_rollout, job_id = measured
        expected = rows * min(per_rollout, data["max_tokens"])
        preview[f"tokens to generate (expected, from job #{job_id}'s mean length)"] = round(expected)
        preview[f"time (expected, at job #{job_id}'s {per_s:,.0f} tokens/s)"] = _duration(expected / per_s)
        preview["time (at most)"] = _duration(rows * data["max_tokens"] / per_s)
        return preview

    def clean_template(self):
        name = self.cleaned_data["template"]
        if name not in BUILT_IN and not PromptTemplate.objects.filter(name=name).exists():
            raise forms.ValidationError(f"no template {name!r}: use r1-zero, chat or a saved template's name")
        return name


class GenerationForm(SamplingForm):
    """Sampling, plus how prompts marked non-reasoning are asked (generation and rejection sampling)."""

    non_reasoning_mode = forms.ChoiceField(
        choices=[(mode, f"{mode}: {what}") for mode, what in NON_REASONING_MODES.items()], initial="cot",
        help_text="How prompts marked non-reasoning are asked (built-in texts "
                  + ", ".join(name for name, _ in NON_REASONING_TEMPLATES.values())
                  + "); reasoning prompts use the template above")
    non_reasoning_template = forms.CharField(
        max_length=100, required=False,
        help_text="A saved template for non-reasoning prompts instead of the mode's built-in text")

    def clean_non_reasoning_template(self):
        name = self.cleaned_data["non_reasoning_template"].strip()
        if name and not PromptTemplate.objects.filter(name=name).exists():
            raise forms.ValidationError(f"no saved template {name!r}; leave empty for the mode's built-in text")
        return name


def _last_speed(model: ModelVersion) -> tuple[float, float, int] | None:
    """(tokens/s, mean tokens per completion, job id) of the model's newest sampling job that measured them."""
    job = (Job.objects.filter(params__model_version=model.pk, result__tokens_per_s__gt=0,
                              result__rollouts_written__gt=0).order_by("-id").first())
    if job is None:
        return None
    return job.result["tokens_per_s"], job.result["tokens_generated"] / job.result["rollouts_written"], job.pk


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


# A model prompted through its chat template answers in R1's chat format (reasoning, </think>, a plain
# answer), not in R1-Zero's tags: its default recipe is the chat-format counterpart.
CHAT_RECIPES = {"r1-zero-math": "r1-chat-math"}


def default_recipe_for(recipe: str, template: str | None) -> str:
    return CHAT_RECIPES.get(recipe, recipe) if template == "chat" else recipe


def template_text(name: str) -> str | None:
    return BUILT_IN[name] if name in BUILT_IN else PromptTemplate.objects.get(name=name).text


def input_renderer(params: dict):
    """A function giving the model's input for a prompt: the job's template, or for a prompt marked
    non-reasoning, the job's non-reasoning mode (a job without one, evaluation, asks every prompt alike)."""
    template = template_text(params["template"])
    mode, custom = params.get("non_reasoning_mode"), params.get("non_reasoning_template")
    custom_text = template_text(custom) if mode and custom else None

    def prompt_input(prompt: Prompt):
        if prompt.reasoning or not mode:
            return render(template, prompt.question)
        return render_non_reasoning(mode, prompt.question, chat=template is None, template=custom_text)

    return prompt_input


@dataclass
class SamplingStats:
    prompts_done: int = 0
    rollouts: int = 0
    tokens: int = 0
    generate_s: float = 0.0
    score_s: float = 0.0
    write_s: float = 0.0
    batch_retries: int = 0
    skipped: dict = field(default_factory=dict)  # prompt id → reason

    def figures(self, wall_s: float) -> dict:
        return {
            "prompts_done": self.prompts_done,
            "rollouts_written": self.rollouts,
            "tokens_generated": self.tokens,
            "tokens_per_s": round(self.tokens / self.generate_s, 1) if self.generate_s else None,
            "db_write_share": round(self.write_s / wall_s, 4) if wall_s else None,
            "batch_retries": self.batch_retries,
            "skipped_prompts": len(self.skipped),
        }


def sample_rollouts(ctx, params: dict) -> SamplingStats:
    """Generate, score and write rollouts for params' prompts under ctx.job; resumable."""
    job = ctx.job
    model_version = ModelVersion.objects.get(pk=params["model_version"])
    prompts = list(Prompt.objects.filter(dataset_id=params["dataset"]).order_by("id")[: params.get("limit") or None])
    n = params["n"]
    complete = set(
        Rollout.objects.filter(job=job).values("prompt_id").annotate(samples=Count("id"))
        .filter(samples__gte=n).values_list("prompt_id", flat=True)
    )
    todo = [p for p in prompts if p.pk not in complete]
    ctx.progress(len(prompts) - len(todo), len(prompts))
    if complete:
        ctx.log(f"resuming: {len(complete)} prompts already have their {n} samples")
    sampling = SamplingParams(n=n, temperature=params["temperature"], top_p=params["top_p"],
                              max_tokens=params["max_tokens"], seed=params.get("seed"),
                              logprobs=MAX_TOP_K if params.get("capture_tokens") else None)
    prompt_input = input_renderer(params)
    recipe = RewardRecipe.objects.get(pk=params["recipe"]) if params.get("recipe") else None
    stats, started = SamplingStats(), time.monotonic()
    ctx.log(f"loading {model_version} ({model_version.backend})")
    backend = make_backend(model_version.backend, model_version.uri, model_version.config)
    if hasattr(backend, "notice"):  # the OpenAI backend says here which parameters the server refused
        backend.notice = ctx.log
    pool = ScoringPool(recipe.spec, judge=judge_for(recipe.spec)) if recipe else None
    try:
        for start in range(0, len(todo), params["batch_size"]):
            batch = _fits_context(backend, todo[start:start + params["batch_size"]], prompt_input, stats)
            if batch:
                _sample_batch(ctx, backend, pool, batch, sampling, model_version, recipe, stats, params)
            ctx.progress(len(prompts) - len(todo) + min(start + params["batch_size"], len(todo)))
            ctx.report(**stats.figures(time.monotonic() - started))
            if pool and pool.judge:  # a recipe with a judge model: its calls, cached answers and tokens
                ctx.report(**pool.judge.counts.figures())
            ctx.check_cancelled()
    finally:
        if pool:
            pool.close()
        backend.close()
    if stats.skipped:
        ctx.log(f"skipped {len(stats.skipped)} prompts: " + "; ".join(
            f"prompt {pk}: {why}" for pk, why in list(stats.skipped.items())[:20]))
    ctx.report(**stats.figures(time.monotonic() - started))
    return stats


def _fits_context(backend, prompts, prompt_input, stats) -> list[tuple[Prompt, object]]:
    """(prompt, rendered input) pairs, without prompts longer than the model's context: those are
    skipped with the reason, never truncated silently."""
    limit = backend.context_length()
    kept = []
    for prompt in prompts:
        rendered = prompt_input(prompt)
        tokens = backend.count_tokens(rendered) if limit else None
        if tokens is not None and tokens >= limit:
            stats.skipped[prompt.pk] = f"{tokens} prompt tokens; the model's context is {limit}"
        else:
            kept.append((prompt, rendered))
    return kept


def _generate_with_retries(backend, rendered, sampling, stats, retries: int, ctx):
    for attempt in range(retries + 1):
        try:
            return backend.generate(rendered, sampling)
        except BackendError as exc:
            if not exc.retryable or attempt == retries:
                raise
            stats.batch_retries += 1
            ctx.log(f"batch failed ({exc}); retry {attempt + 1} of {retries}")
            time.sleep(min(30.0, 2.0 ** attempt))


def _sample_batch(ctx, backend, pool, batch, sampling, model_version, recipe, stats, params):
    rendered = [prompt_input for _, prompt_input in batch]
    t0 = time.monotonic()
    results = _generate_with_retries(backend, rendered, sampling, stats, params["max_batch_retries"], ctx)
    stats.generate_s += time.monotonic() - t0
    rows = []
    non_reasoning_mode = params.get("non_reasoning_mode")
    for (prompt, prompt_input), completions in zip(batch, results):
        shown_prompt = backend.render(prompt_input)
        mode = None if prompt.reasoning else non_reasoning_mode
        for index, completion in enumerate(completions):
            metadata = {"reasoning_tokens": completion.reasoning_tokens} if completion.reasoning_tokens else {}
            row = rollout_row(
                job_id=ctx.job.pk, prompt_id=prompt.pk, completion=completion.text, reasoning=completion.reasoning,
                model_version_id=model_version.pk, sample_index=index, prompt_text=shown_prompt,
                prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
                finish_reason=completion.finish_reason,  # stop, length or error (a filtered or aborted output)
                metadata=metadata | ({"non_reasoning": mode} if mode else {}),
            )
            if mode == "plain":  # asked for the answer only: no chain of thought is kept, whatever came first
                row |= {"reasoning": "", "answer": plain_answer(completion.text)}
            rows.append(row | {TOKENS_KEY: completion.tokens})
            stats.tokens += completion.completion_tokens or 0
    if pool:
        t0 = time.monotonic()
        prompts = {p.pk: p for p, _ in batch}
        samples = [sample_for(prompts[r["prompt_id"]], r["completion"], r["finish_reason"]) for r in rows]
        for row, scored in zip(rows, pool.map(samples)):
            row |= reward_columns(scored) | {"reward_recipe_id": recipe.pk}
        stats.score_s += time.monotonic() - t0
    t0 = time.monotonic()
    stats.rollouts += write_rollouts(rows)
    stats.write_s += time.monotonic() - t0
    stats.prompts_done += len(batch)


@job_kind("generate", "Generate rollouts", GenerationForm, queue=ModelVersion.queue_for)
def run_generation(ctx) -> dict:
    stats = sample_rollouts(ctx, ctx.params)
    return {"skipped": {str(k): v for k, v in list(stats.skipped.items())[:100]}} if stats.skipped else {}
