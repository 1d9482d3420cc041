"""Scoring completions with a stored reward recipe without keeping them: POST /api/score.

A small batch is scored at once in the asking process; a large one is written to a private upload and
scored by a `score_completions` job, whose scores go to a file under STORAGE_ROOT/scores (served by
GET /api/score/<job id>: a result of 20,000 items is too large for the job row, which lists and pages
read whole). Either way each item is scored by the same ScoringPool as the scoring job (a subprocess per
core, each completion bounded in time; code runs in the sandbox) and gets a rollout's reward columns.
"""

import json
import os
import statistics
from collections.abc import Callable
from pathlib import Path

from django import forms
from django.conf import settings
from django.core.files.base import ContentFile

from apps.core.uploads import discard_upload, private_folder, save_upload
from apps.jobs import launching
from apps.jobs.kinds import job_kind
from apps.jobs.models import Job
from apps.rollouts.judging import judge_for
from apps.rollouts.models import RewardRecipe
from apps.rollouts.rows import reward_columns
from workers.rewards.base import Sample
from workers.rewards.pool import ScoringPool

KIND = "score_completions"
TIMEOUT_S = 20.0  # per completion, in the request and in the job alike: the same input scores the same
# What one item may hold (characters): R1's longest completions (32k tokens) are about 130k characters.
MAX_COMPLETION_CHARS = 262_144
MAX_TEXT_CHARS = 100_000  # reference and prompt
MAX_TESTS = 1_000
PROGRESS_EVERY = 100  # items between a job's progress reports and cancel checks


class BatchError(Exception):
    """A batch file the job cannot read (its upload is gone, or a line is not an item)."""


def recipe_named(name: str, version: int | None = None) -> RewardRecipe | None:
    """The recipe version `version` of `name`, or the version the name stands for (its newest)."""
    if version is None:
        return RewardRecipe.latest(name)
    return RewardRecipe.objects.filter(name=name, version=version).first()


def sample_of(item: dict) -> Sample:
    """What the reward functions see of one item: {"completion", "reference", "prompt", "tests", ...}."""
    return Sample(
        completion=item["completion"],
        reference=item.get("reference") or "",
        tests=tuple(item.get("tests") or ()),
        prompt=item.get("prompt") or "",
        domain=item.get("domain") or "math",
        language=item.get("language") or "en",
        finish_reason=item.get("finish_reason") or "stop",
    )


def item_score(scored: dict) -> dict:
    """A recipe's score as the columns a scored rollout gets (rows.reward_columns), and why it failed, if it did."""
    columns = reward_columns(scored)
    return {"total_reward": columns["total_reward"], "rewards": columns["rewards"],
            "is_correct": columns["is_correct"], "format_ok": columns["format_ok"], "error": scored.get("error")}


def score_items(recipe_spec: dict, items: list[dict], processes: int | None = None,
                each: Callable[[int], None] | None = None,
                judge_figures: Callable[[dict], None] | None = None) -> list[dict]:
    """The scores of `items` in order, across at most one process per core; `each(done)` after every item, and
    for a recipe with a judge model `judge_figures` with its calls, cached answers and tokens so far.

    Raises SandboxUnavailable for a recipe with code_accuracy where the sandbox cannot start."""
    processes = max(1, min(len(items), processes or os.cpu_count() or 1))
    scores: list[dict] = []
    with ScoringPool(recipe_spec, processes=processes, timeout_s=TIMEOUT_S, judge=judge_for(recipe_spec)) as pool:
        for scored in pool.map(sample_of(item) for item in items):
            scores.append(item_score(scored))
            if each:
                each(len(scores))
            if judge_figures and pool.judge:
                judge_figures(pool.judge.counts.figures())
    return scores


# --- the job, for batches beyond SCORE_SYNC_MAX ----------------------------------------------------------------


def launch_batch(recipe: RewardRecipe, items: list[dict], user=None, via: str = "api") -> Job:
    """Write `items` to a private upload and launch the job that scores them (it deletes the upload when it ends)."""
    lines = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    path = save_upload(ContentFile(lines.encode(), name="score-batch.jsonl"))
    try:
        return launching.launch(KIND, {"recipe": recipe.pk, "path": str(path)}, user=user, via=via,
                                label=f"Score {len(items)} completions with {recipe}")
    except Exception:
        discard_upload(path)  # no job was made to delete it
        raise


def read_batch(path: Path) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:  # a retried job: the upload went when the first attempt ended
        raise BatchError(f"the batch's upload {path.name} is gone (it is deleted when its job ends): "
                         "send the batch again") from None
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        item = json.loads(line)
        if not isinstance(item, dict) or not isinstance(item.get("completion"), str):
            raise BatchError(f"line {number}: an item needs a string 'completion'")
        items.append(item)
        if len(items) > settings.SCORE_MAX_ITEMS:
            raise BatchError(f"more than {settings.SCORE_MAX_ITEMS} items (SCORE_MAX_ITEMS)")
    return items


def scores_path(job_id: int) -> Path:
    return settings.STORAGE_ROOT / "scores" / f"job-{job_id}.json"


def write_scores(job_id: int, recipe: RewardRecipe, scores: list[dict]) -> Path:
    """The job's scores as one JSON document, private (0600), written whole or not at all."""
    path = scores_path(job_id)
    private_folder(path.parent)
    partial = path.with_suffix(".partial")
    with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as out:
        json.dump({"recipe": recipe.name, "version": recipe.version, "items": scores}, out, ensure_ascii=False)
    partial.replace(path)
    return path


def read_scores(job: Job) -> dict | None:
    """What a finished score_completions job wrote: {"recipe", "version", "items"}, or None if it is gone."""
    try:
        return json.loads(scores_path(job.pk).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


class ScoreBatchParamsForm(forms.Form):
    recipe = forms.ModelChoiceField(queryset=RewardRecipe.objects.all(), help_text="The recipe version to score with")
    path = forms.CharField(max_length=4096, help_text="The batch: an upload of JSON lines, one item each, as "
                                                      "POST /api/score writes it (deleted when the job ends)")
    processes = forms.IntegerField(required=False, min_value=1, max_value=256, help_text="Default: one per core")

    def clean_path(self):
        # Only an upload: the job deletes its input when it ends, and a batch is never a file of the server's.
        path = Path(self.cleaned_data["path"])
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError):
            resolved = None
        if resolved is None or not resolved.is_file() or resolved.parent.parent != settings.UPLOAD_DIR.resolve():
            raise forms.ValidationError(f"{path} is not an upload (POST /api/score makes one)")
        return str(resolved)


@job_kind(KIND, "Score completions", ScoreBatchParamsForm, own_page="job_list",
          own_page_hint="Batches of completions are scored through the API: POST /api/score.")
def run_score_batch(ctx) -> dict:
    params = ctx.params
    recipe = RewardRecipe.objects.get(pk=params["recipe"])
    items = read_batch(Path(params["path"]))
    ctx.progress(0, len(items))
    ctx.log(f"scoring {len(items)} completions with {recipe}")

    def each(done: int) -> None:
        ctx.progress(done)
        if done % PROGRESS_EVERY == 0:
            ctx.check_cancelled()

    scores = score_items(recipe.spec, items, processes=params.get("processes"), each=each,
                         judge_figures=lambda figures: ctx.report(**figures))
    write_scores(ctx.job.pk, recipe, scores)
    return {"recipe": str(recipe), "items": len(scores),
            "mean_reward": statistics.fmean(s["total_reward"] for s in scores) if scores else None,
            "correct": sum(1 for s in scores if s["is_correct"]), "scores": f"/api/score/{ctx.job.pk}"}
