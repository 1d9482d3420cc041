"""Recipes, the scoring pool, the scoring job and the `score` command."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from apps.rollouts.rows import reward_columns
from workers.rewards.base import Sample
from workers.rewards.pool import ScoringPool
from workers.rewards.recipes import DEFAULT_RECIPES, Recipe, RecipeError

ROOT = Path(__file__).resolve().parents[2]
MATH_ONLY = {"components": [{"name": "math_accuracy", "weight": 2.0, "params": {"timeout_s": 5}}]}


def answer(text):
    return f"<think>thinking</think> <answer>\\boxed{{{text}}}</answer>"


@pytest.mark.parametrize(
    "spec, message",
    [
        ({}, "non-empty list 'components'"),  # no components at all
        ({"components": [{"name": "nope"}]}, "components[0]: 'name' must be one of"),  # unknown component
        ({"components": [{"name": "format", "weight": "high"}]}, "components[0]: 'weight' must be a number"),
        ({"components": [{"name": "format", "params": []}]}, "components[0]: 'params' must be an object"),
        ({"components": [{"name": "format", "extra": 1}]}, "components[0]: unknown field(s) extra"),
        ({"components": [{"name": "format", "domains": "math"}]}, "'domains' must be a list of strings"),
        ({"components": [{"name": "code_accuracy", "params": {"kernel_isolation": False}}]},
         "components[0]: unknown param(s) kernel_isolation for code_accuracy"),  # a typo or a knob that is gone
        ({"components": [{"name": "cosine_length"}]}, "cosine_length needs math_accuracy or code_accuracy before it"),
    ],
)
def test_a_bad_recipe_is_refused_naming_the_field(spec, message):
    with pytest.raises(RecipeError, match=re.escape(message)):
        Recipe.from_spec(spec)


def test_the_content_hash_ignores_key_order_and_changes_with_content():
    a = Recipe.from_spec({"components": [{"weight": 1, "name": "format"}]})
    b = Recipe.from_spec({"components": [{"name": "format", "weight": 1.0, "params": {}}]})
    c = Recipe.from_spec({"components": [{"name": "format", "weight": 0.5}]})
    assert a.content_hash == b.content_hash != c.content_hash


def test_a_recipe_sums_weighted_components_and_skips_other_domains():
    recipe = Recipe.from_spec({"components": [
        {"name": "math_accuracy", "weight": 2.0, "domains": ["math"]},
        {"name": "format", "weight": 0.5},
    ]})
    math = recipe.score(Sample(answer("4"), reference="4"))
    assert math["total"] == 2.0 + 0.5
    accuracy = math["components"]["math_accuracy"]
    assert accuracy == {"value": 1.0, "weight": 2.0, "details": accuracy["details"]}
    general = recipe.score(Sample(answer("4"), domain="general"))
    assert set(general["components"]) == {"format"}
    assert reward_columns(math) | {"rewards": None} == {
        "total_reward": 2.5, "is_correct": True, "format_ok": True, "language_consistency": None, "rewards": None,
    }


def test_length_shaping_uses_the_accuracy_graded_before_it():
    recipe = Recipe.from_spec({"components": [
        {"name": "math_accuracy", "weight": 1.0},
        {"name": "cosine_length", "weight": 1.0, "params": {"max_len": 100}},
    ]})
    right = recipe.score(Sample(answer("4"), reference="4"))["components"]["cosine_length"]["value"]
    wrong = recipe.score(Sample(answer("5"), reference="4"))["components"]["cosine_length"]["value"]
    assert right > 0 > wrong


def test_the_pool_scores_in_order_like_one_process():
    recipe = Recipe.from_spec(DEFAULT_RECIPES["r1-zero-math"])
    samples = [Sample(answer(i % 7), reference=str(i % 5)) for i in range(40)]
    with ScoringPool(recipe.to_spec(), processes=2) as pool:
        pooled = list(pool.map(samples))
    assert pooled == [recipe.score(s) for s in samples]
    assert sum(p["components"]["math_accuracy"]["value"] for p in pooled) == sum(i % 7 == i % 5 for i in range(40))


def test_a_sample_that_overruns_is_killed_scored_zero_and_the_pool_goes_on():
    samples = [Sample(answer("4"), reference="4"), Sample(answer("9^{9^{9}}"), reference="1"),
               Sample(answer("5"), reference="5")]
    start = time.monotonic()
    with ScoringPool(MATH_ONLY, processes=1, timeout_s=1.5) as pool:
        first_worker = pool.workers[0].proc.pid
        results = list(pool.map(samples))
        replacement = pool.workers[0].proc.pid
    assert time.monotonic() - start < 15
    assert [r["total"] for r in results] == [2.0, 0.0, 2.0]
    assert results[1]["error"] == "scoring took longer than 1.5 s"
    assert replacement != first_worker  # the stuck worker was killed and replaced
    assert not psutil.pid_exists(first_worker) and not psutil.pid_exists(replacement)  # close() ends them all


def run_score_command(lines: list[str], recipe="r1-zero-math"):
    return subprocess.run([sys.executable, "manage.py", "score", "--recipe", recipe, "--processes", "1"],
                          cwd=ROOT, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120)


@pytest.mark.django_db(transaction=True)
def test_the_score_command_reads_jsonl_and_writes_scores(live_database_env):
    good = json.dumps({"completion": answer("\\frac{1}{2}"), "reference": "0.5"})
    wrong = json.dumps({"completion": "A: 3", "answer": "#### 4", "id": 7})
    result = run_score_command([good, wrong, "{broken"])
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1 and "1 line(s) could not be read" in result.stderr
    assert out[0]["total_reward"] == 2.0 and out[0]["rewards"]["format"]["value"] == 1.0
    assert out[1]["id"] == 7 and out[1]["total_reward"] == 0.0
    assert out[1]["rewards"]["math_accuracy"]["details"]["extracted"] == "3"
    assert out[2]["error"] == "line 3: not valid JSON (Expecting property name enclosed in double quotes)"
    missing = run_score_command([good], recipe="nope")
    assert missing.returncode == 1
    assert "No recipe 'nope'; known: r1-chat-math, r1-reasoning-math, r1-zero-code" in missing.stderr


@pytest.mark.django_db(transaction=True)
def test_the_scoring_job_rescores_a_filtered_set_on_a_worker(celery_worker, dataset):
    from apps.core.bulk import bulk_insert
    from apps.datasets.models import Prompt
    from apps.jobs import launching
    from apps.jobs.models import Job
    from apps.rollouts.models import RewardRecipe, Rollout
    from tests.conftest import wait_for_job

    bulk_insert(Prompt, [{"dataset_id": dataset.pk, "question": f"{i} + 0?", "reference_answer": str(i),
                          "content_hash": f"h{i}"} for i in range(30)])
    source = Job.objects.create(kind="generate", status="succeeded")
    prompts = list(Prompt.objects.order_by("pk"))
    rows = [{"job_id": source.pk, "prompt_id": p.pk, "step": step, "sample_index": 0,
             "completion": answer(i if i % 3 else i + 1) if step else "no tags A: x"}
            for i, p in enumerate(prompts) for step in (0, 1)]
    bulk_insert(Rollout, rows)
    recipe = RewardRecipe.latest("r1-zero-math")

    job = launching.launch("score_rollouts", {"recipe": recipe.pk, "job": source.pk, "step_min": 1, "processes": 2})
    wait_for_job(job, timeout=120)
    assert job.status == "succeeded", job.error
    assert job.result["scored"] == 30 and job.result["correct"] == 20
    step1 = Rollout.objects.filter(job=source, step=1)
    assert step1.filter(reward_recipe=recipe, format_ok=True).count() == 30
    assert step1.filter(is_correct=True, total_reward=2.0).count() == 20
    wrong = step1.filter(is_correct=False).first()
    assert wrong.rewards["math_accuracy"]["details"]["reason"] == "the answer does not match the reference"
    assert not Rollout.objects.filter(job=source, step=0, reward_recipe__isnull=False).exists()  # outside the filter

    bad = pytest.raises(Exception)
    with bad:
        launching.launch("score_rollouts", {"recipe": recipe.pk, "step_min": 5, "step_max": 1})
    assert "step_max" in str(bad.excinfo.value)
