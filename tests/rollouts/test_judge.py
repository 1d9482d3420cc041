"""The generative judge in the app: recipes naming a judge model and a stored judge prompt, the scoring job
on a real worker (verdicts on the rollout page, calls and tokens on the job page, a re-score served by the
JudgeVerdict cache), generation with a judged recipe, judge prompts through the API, and the GRPO form
refusing a judge unless the operator allows it. The judge is an OpenAI-shaped server on loopback."""

import json
import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from apps.api import tokens
from apps.core.bulk import bulk_insert
from apps.datasets.models import ModelVersion, Prompt
from apps.jobs import launching
from apps.jobs.models import Job
from apps.jobs.runner import execute
from apps.rollouts.models import JudgePrompt, JudgeVerdict, RewardRecipe, Rollout
from tests.conftest import wait_for_job
from tests.fake_openai import MODEL, FakeServer
from workers.rewards.judge import DEFAULT_PROMPT
from workers.rewards.recipes import RecipeError

pytestmark = pytest.mark.django_db(transaction=True)


def grader(message: str) -> str:
    """A judge reading the default prompt: correct when the final answer is the reference."""
    reference = re.search(r"Reference answer:\n(.*?)\n\n", message, re.DOTALL).group(1).strip()
    answer = re.search(r"Model's final answer:\n(.*?)\n\n", message, re.DOTALL).group(1).strip()
    if answer == reference:
        return f"REASON: {answer} is the reference\nVERDICT: correct"
    return f"REASON: {answer} is not {reference}\nVERDICT: incorrect"


@pytest.fixture
def judge_server():
    fake = FakeServer()
    fake.reply = grader
    yield fake
    fake.stop()


@pytest.fixture
def judge_model(judge_server):
    return ModelVersion.objects.create(name="judge-v3", uri=MODEL, backend="openai",
                                       config={"base_url": judge_server.url, "openai": {"backoff_s": 0.01}})


@pytest.fixture
def judged(judge_model):
    return RewardRecipe.save_spec("judged", {"components": [
        {"name": "llm_judge", "weight": 1.0, "params": {"judge": judge_model.name, "concurrency": 4, "timeout_s": 5}},
        {"name": "think_format", "weight": 0.5}]})


@pytest.fixture
def rollouts(dataset):
    """Ten prompts "What is i + 1?" answered right on even i and wrong on odd i, by one finished job."""
    bulk_insert(Prompt, [{"dataset_id": dataset.pk, "question": f"What is {i} + 1?", "reference_answer": str(i + 1),
                          "content_hash": f"h{i}"} for i in range(10)])
    source = Job.objects.create(kind="generate", status="succeeded")
    bulk_insert(Rollout, [{"job_id": source.pk, "prompt_id": p.pk, "sample_index": 0,
                           "completion": f"<think>{i} plus one</think>\n{i + 1 + i % 2}"}
                          for i, p in enumerate(Prompt.objects.order_by("pk"))])
    return source


def score(recipe, source, worker=False) -> Job:
    job = launching.launch("score_rollouts", {"recipe": recipe.pk, "job": source.pk, "processes": 1},
                           enqueue=worker)
    if worker:
        return wait_for_job(job, timeout=120)
    execute(job.pk, worker="test")
    job.refresh_from_db()
    return job


def test_the_scoring_job_judges_on_a_worker_counts_calls_and_a_rescore_costs_nothing(
        celery_worker, judge_server, judged, rollouts, admin_client):
    job = score(judged, rollouts, worker=True)
    assert job.status == "succeeded", job.error
    assert job.result["scored"] == 10 and job.result["correct"] == 5
    assert job.result["judge_calls"] == 10 and job.result["judge_cached"] == 0
    assert job.result["judge_prompt_tokens"] > 0 and job.result["judge_completion_tokens"] > 0
    assert len(judge_server.posts()) == 10 and judge_server.max_in_flight <= 4
    right = Rollout.objects.filter(job=rollouts, is_correct=True).first()
    assert right.rewards["llm_judge"]["value"] == 1.0
    assert right.rewards["llm_judge"]["details"]["judge"] == "judge-v3"
    assert right.rewards["llm_judge"]["details"]["judge_prompt"] == "default v1"
    assert right.total_reward == 1.5  # judge 1.0 + think_format 0.5 x 1.0
    assert JudgeVerdict.objects.count() == 10

    page = admin_client.get(reverse("job_detail", args=[job.pk])).content.decode()
    assert "judge_calls" in page and "judge_completion_tokens" in page

    again = score(judged, rollouts, worker=True)
    assert again.status == "succeeded", again.error
    assert again.result["judge_calls"] == 0 and again.result["judge_cached"] == 10
    assert again.result["correct"] == 5
    assert len(judge_server.posts()) == 10  # no call at all


def test_the_rollout_page_shows_the_verdict_and_the_reason(judged, rollouts, admin_client):
    assert score(judged, rollouts).status == "succeeded"
    wrong = Rollout.objects.filter(job=rollouts, is_correct=False).order_by("pk").first()
    html = admin_client.get(reverse("rollout_detail", args=[wrong.pk])).content.decode()
    assert "llm_judge" in html and "incorrect" in html
    assert "3 is not 2" in html  # the judge's reason, for "What is 1 + 1?" answered 3


def test_a_judge_answering_nonsense_or_timing_out_scores_none_with_the_reason(judge_server, judged, rollouts,
                                                                           admin_client):
    judge_server.reply = lambda message: "Great question! The answer has many interesting aspects."
    judge_server.script = [("hang", 8.0)]  # one call gets no answer within timeout_s (5 s)
    job = score(judged, rollouts)
    assert job.status == "succeeded", job.error
    assert job.result["judge_no_verdict"] == 10 and job.result["correct"] == 0
    reasons = [r.rewards["llm_judge"]["details"]["reason"] for r in Rollout.objects.filter(job=rollouts)]
    assert all(r.rewards["llm_judge"]["value"] is None and r.is_correct is None
               for r in Rollout.objects.filter(job=rollouts))
    assert sum("malformed verdict" in r for r in reasons) == 9
    assert sum("no answer within 5" in r for r in reasons) == 1
    assert JudgeVerdict.objects.count() == 9  # the timed-out one is asked again next time
    assert len(judge_server.posts()) == 10  # the timeout was not retried
    shown = next(r for r in Rollout.objects.filter(job=rollouts)
                 if "malformed" in r.rewards["llm_judge"]["details"]["reason"])
    html = admin_client.get(reverse("rollout_detail", args=[shown.pk])).content.decode()
    assert "malformed verdict" in html and "Great question!" in html  # the reason, and what the judge said


def test_recipes_naming_a_missing_judge_or_prompt_are_refused_naming_the_field(judge_model):
    with pytest.raises(RecipeError, match=r"components\[0\]: params.judge: no model version 'nobody'"):
        RewardRecipe.save_spec("x", {"components": [{"name": "llm_judge", "params": {"judge": "nobody"}}]})
    with pytest.raises(RecipeError, match=r"params.prompt: no judge prompt 'strict'"):
        RewardRecipe.save_spec("x", {"components": [{"name": "llm_judge",
                                                     "params": {"judge": judge_model.pk, "prompt": "strict"}}]})
    with pytest.raises(RecipeError, match=r"params.prompt: no judge prompt 'default' version 7"):
        RewardRecipe.save_spec("x", {"components": [{"name": "llm_judge",
                                                     "params": {"judge": judge_model.pk, "prompt_version": 7}}]})
    vllm = ModelVersion.objects.create(name="local-vllm", uri="/m", backend="vllm")
    with pytest.raises(RecipeError, match=r"params.judge: .* has backend 'vllm'"):
        RewardRecipe.save_spec("x", {"components": [{"name": "llm_judge", "params": {"judge": vllm.pk}}]})


def test_judge_prompts_are_versioned_by_content_and_verdicts_cached_per_version(judge_server, judge_model, rollouts):
    assert JudgePrompt.latest("default").text == DEFAULT_PROMPT  # the built-in, from the migration
    assert JudgePrompt.save_text("default", DEFAULT_PROMPT).version == 1  # same text: the same version
    stricter = JudgePrompt.save_text("default", DEFAULT_PROMPT.replace("equivalent forms count", "only exact"))
    assert stricter.version == 2
    with pytest.raises(ValueError, match="VERDICT"):
        JudgePrompt.save_text("default", "Is {completion} right?")
    with pytest.raises(ValueError, match="{completion} or {answer}"):
        JudgePrompt.save_text("default", "Say VERDICT: correct")

    v1 = RewardRecipe.save_spec("judged-v1", {"components": [
        {"name": "llm_judge", "params": {"judge": judge_model.pk, "prompt_version": 1}}]})
    newest = RewardRecipe.save_spec("judged-newest", {"components": [
        {"name": "llm_judge", "params": {"judge": judge_model.pk}}]})
    assert score(v1, rollouts).result["judge_calls"] == 10
    assert score(newest, rollouts).result["judge_calls"] == 10  # version 2 has not judged these yet
    assert score(newest, rollouts).result["judge_cached"] == 10


class SolvingServer(FakeServer):
    """Raw-text completions answer "What is i + 1?" (right on even samples), chat requests are judged."""

    def answer(self, path, body):
        if path != "/v1/completions":
            return super().answer(path, body)
        i = int(body["prompt"].split("What is ")[1].split(" +")[0])
        texts = [f"<think>{i} plus one</think>\n{i + 1 + s % 2}" for s in range(body["n"])]
        return {"choices": [{"index": s, "text": t, "finish_reason": "stop"} for s, t in enumerate(texts)],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5 * len(texts)}}


def test_generation_scores_with_the_judge_and_reports_its_calls(dataset, rollouts, judge_server, judged):
    policy = SolvingServer()
    try:
        model = ModelVersion.objects.create(name="policy", uri=MODEL, backend="openai",
                                            config={"base_url": policy.url})
        job = launching.launch("generate", {"dataset": dataset.pk, "model_version": model.pk, "n": 2,
                                            "batch_size": 5, "recipe": judged.pk}, enqueue=False)
        execute(job.pk, worker="test")
        job.refresh_from_db()
    finally:
        policy.stop()
    assert job.status == "succeeded", job.error
    written = Rollout.objects.filter(job=job)
    assert written.count() == 20 and written.filter(is_correct=True).count() == 10
    assert written.filter(rewards__llm_judge__details__verdict="incorrect").count() == 10
    assert job.result["judge_calls"] == 20 and job.result["judge_cached"] == 0


def test_the_grpo_form_refuses_a_judge_unless_the_operator_allows_it(judged, dataset, rollouts):
    base = ModelVersion.objects.create(name="tiny-base", uri="/models/tiny")
    params = {"model_version": base.pk, "dataset": dataset.pk, "recipe": judged.pk, "batch_size": 4,
              "num_generations": 2, "steps_per_generation": 1, "accelerate_config": "cpu"}
    with pytest.raises(ValidationError) as refused:
        launching.launch("grpo", params, enqueue=False)
    message = " ".join(refused.value.message_dict["recipe"])
    assert "judge model" in message and "slow" in message and "Allow judge in training" in message
    job = launching.launch("grpo", params | {"allow_judge": True}, enqueue=False)
    assert job.params["allow_judge"] is True

    from apps.training.training import Run, _spec

    judge = _spec(job, job.params, Run(job), rows=10, resume=None).grpo.judge  # what the trainer is given
    assert judge["name"] == "judge-v3" and judge["backend"] == "openai" and judge["concurrency"] == 4
    assert judge["prompt_text"] == DEFAULT_PROMPT and judge["prompt_version"] == "default v1"


def test_a_grpo_run_allowed_a_judge_reports_its_calls_on_the_job_page(judged, dataset, rollouts, judge_server,
                                                                         tmp_path, admin_client):
    from workers.generation.tiny import build_tiny_model

    judge_server.reply = lambda message: "REASON: not the reference\nVERDICT: incorrect"  # the tiny model's babble
    base = ModelVersion.objects.create(name="tiny-base", uri=str(build_tiny_model(tmp_path / "tiny", sft_steps=0)))
    job = launching.launch("grpo", {"model_version": base.pk, "dataset": dataset.pk, "recipe": judged.pk,
                                    "allow_judge": True, "max_steps": 2, "batch_size": 4, "num_generations": 2,
                                    "steps_per_generation": 1, "max_completion_length": 12, "save_steps": 0,
                                    "accelerate_config": "cpu"},
                           enqueue=False)
    execute(job.pk, worker="test")
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    judged_rollouts = Rollout.objects.filter(job=job, rewards__llm_judge__details__verdict="incorrect").count()
    assert judged_rollouts == 2 * 4  # two steps of four completions, each given the judge's verdict
    calls = len(judge_server.posts())
    assert job.result["judge_calls"] == calls and calls + job.result["judge_cached"] == 8
    assert job.result["judge_completion_tokens"] > 0
    html = admin_client.get(reverse("job_detail", args=[job.pk])).content.decode()
    assert "judge_calls" in html and str(calls) in html


@pytest.fixture
def api(client, users, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    def call(role, method, body=None):
        _, token = tokens.issue_token(users[role], "judge test")
        headers = {"Authorization": f"Bearer {token}"}
        if method == "get":
            return client.get("/api/judge-prompts", body or {}, headers=headers)
        return client.post("/api/judge-prompts", json.dumps(body), content_type="application/json", headers=headers)

    return call


def test_judge_prompts_through_the_api(api):
    listed = api("viewer", "get").json()
    assert [(p["name"], p["version"], p["latest"]) for p in listed["items"]] == [("default", 1, True)]
    text = "Reference: {reference}\nAnswer: {answer}\nREASON: ...\nVERDICT: correct or incorrect"
    refused = api("viewer", "post", {"name": "short", "text": text})
    assert refused.status_code == 403 and refused.json()["permission"] == "rollouts.add_judgeprompt"
    created = api("admin", "post", {"name": "short", "text": text})
    assert created.status_code == 201 and created.json()["version"] == 1 and created.json()["latest"]
    assert api("admin", "post", {"name": "short", "text": text}).status_code == 200  # the same text: same version
    assert api("admin", "post", {"name": "short", "text": text + "\n"}).json()["version"] == 2
    bad = api("admin", "post", {"name": "short", "text": "Grade {answer}."})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "text"]
    assert "VERDICT" in bad.json()["detail"][0]["msg"]
    assert api("admin", "post", {"name": "no spaces", "text": text}).status_code == 422
    assert [p["version"] for p in api("viewer", "get", {"name": "short"}).json()["items"]] == [2, 1]


def test_the_judge_prompts_page_lists_versions_and_saves_a_new_one(client, users):
    from apps.core.models import AuditEvent

    client.force_login(users["viewer"])
    page = client.get(reverse("judge_prompt_list"))
    assert page.status_code == 200 and "default" in page.content.decode()
    assert "Save a judge prompt" not in page.content.decode()  # a viewer may not save one
    assert client.post(reverse("judge_prompt_list"), {"name": "x", "text": "{answer} VERDICT"}).status_code == 403
    assert reverse("judge_prompt_list") in client.get(reverse("rollout_list")).content.decode()

    client.force_login(users["admin"])
    text = "Is {answer} the same as {reference}?\nREASON: ...\nVERDICT: correct or incorrect"
    saved = client.post(reverse("judge_prompt_list"), {"name": "same", "text": text})
    assert saved.status_code == 302
    prompt = JudgePrompt.latest("same")
    assert prompt.version == 1 and prompt.created_by == users["admin"]
    assert AuditEvent.objects.filter(action="judge_prompt.create", via="web").count() == 1
    assert "<span class=\"ok\">saved</span>" in client.get(saved["Location"]).content.decode()
    bad = client.post(reverse("judge_prompt_list"), {"name": "same", "text": "Is {answer} right?"})
    assert bad.status_code == 400 and "VERDICT" in bad.content.decode()
    assert JudgePrompt.objects.filter(name="same").count() == 1
