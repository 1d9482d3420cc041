"""Non-reasoning data (issue 19): generation asks prompts marked non-reasoning for a short chain of thought
(cot) or the answer only (plain); rejection sampling keeps their samples without a rule-checked answer and
mixes them with the reasoning examples at a chosen share. Generation runs against an OpenAI-compatible
server on loopback (exact texts) and the tiny local model (the flow on a real model)."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from apps.api import tokens
from apps.core.bulk import bulk_insert
from apps.curation.non_reasoning import ShareNotMet, drop_reason, mix_counts
from apps.datasets.models import Dataset, DatasetVersion, ModelVersion, Prompt
from apps.jobs import launching
from apps.jobs.models import Job
from apps.jobs.runner import execute
from apps.rollouts.models import PromptTemplate, Rollout
from tests.fake_openai import MODEL, FakeServer
from workers.generation.templates import NON_REASONING_TEMPLATES, R1_ZERO, render_non_reasoning
from workers.generation.tiny import build_tiny_model

pytestmark = pytest.mark.django_db(transaction=True)

COT_WORDS = NON_REASONING_TEMPLATES["cot"][1].split("{question}")[0].strip()
PLAIN_WORDS = NON_REASONING_TEMPLATES["plain"][1].split("{question}")[0].strip()


class MixedServer(FakeServer):
    """Answers "What is i + 1?" in the R1-Zero format (right on even samples, wrong on odd ones), and a greeting
    as its prompt asks: after a short <think> block (cot; none when `think` is off) or plainly."""

    think = True

    def answer(self, path, body):
        if path != "/v1/completions":
            return super().answer(path, body)
        prompt, n = body["prompt"], body["n"]
        friend = prompt.split("Greet friend ")[-1][:1]
        if COT_WORDS in prompt:
            texts = [f"<think> A friendly greeting, take {s}. </think> Hello friend {friend}!" if self.think
                     else f"Hello friend {friend}!" for s in range(n)]
        elif "What is " in prompt:
            i = int(prompt.split("What is ")[1].split(" +")[0])
            texts = [f"<think> {i} plus one is {i + 1 + s % 2}. </think> <answer> {i + 1 + s % 2} </answer>"
                     for s in range(n)]
        else:  # asked for the answer only, by the built-in text or a saved template
            texts = [f"Hello friend {friend}, take {s}!" for s in range(n)]
        return {"choices": [{"index": s, "text": t, "finish_reason": "stop"} for s, t in enumerate(texts)],
                "usage": {"prompt_tokens": 40, "completion_tokens": 12 * len(texts)}}


@pytest.fixture
def solver():
    fake = MixedServer()
    yield fake
    fake.stop()


@pytest.fixture
def prompts(dataset):
    """Six reasoning prompts, then four non-reasoning ones (ids in that order)."""
    rows = [{"dataset_id": dataset.pk, "question": f"What is {i} + 1?", "reference_answer": str(i + 1),
             "content_hash": f"r{i}"} for i in range(6)]
    rows += [{"dataset_id": dataset.pk, "question": f"Greet friend {j}.", "domain": "writing", "reasoning": False,
              "content_hash": f"w{j}"} for j in range(4)]
    bulk_insert(Prompt, rows)
    return list(Prompt.objects.order_by("pk"))


def api_model(url):
    return ModelVersion.objects.create(name="api", uri=MODEL, backend="openai", config={
        "base_url": url, "openai": {"max_retries": 0, "timeout_s": 5}})


def run(kind, params):
    job = launching.launch(kind, params, enqueue=False)
    execute(job.pk, worker="test")
    job.refresh_from_db()
    return job


def rejection(dataset, model, **params):
    return run("rejection_sample", {"dataset": dataset.pk, "model_version": model.pk, "n": 2, "keep_per_prompt": 1,
                                    "output_dataset": "sft-mix", "batch_size": 4, **params})


# ---- generation ----------------------------------------------------------------------------------


def test_cot_mode_asks_for_a_short_chain_of_thought_and_stores_it_apart_from_the_answer(solver, dataset, prompts):
    job = run("generate", {"dataset": dataset.pk, "model_version": api_model(solver.url).pk,
                           "non_reasoning_mode": "cot"})
    assert job.status == "succeeded", job.error
    greeting = Rollout.objects.get(job=job, prompt=prompts[6])
    assert greeting.prompt_text == render_non_reasoning("cot", "Greet friend 0.", chat=False)
    assert greeting.prompt_text.startswith("A conversation between User and Assistant. User: " + COT_WORDS)
    assert (greeting.reasoning, greeting.answer) == ("A friendly greeting, take 0.", "Hello friend 0!")
    assert greeting.metadata == {"non_reasoning": "cot"}
    sum_rollout = Rollout.objects.get(job=job, prompt=prompts[0])  # a reasoning prompt keeps the job's template
    assert sum_rollout.prompt_text == R1_ZERO.format(question="What is 0 + 1?")
    assert (sum_rollout.answer, sum_rollout.metadata) == ("1", {})


def test_plain_mode_asks_for_the_answer_only_and_stores_empty_reasoning(solver, dataset, prompts):
    job = run("generate", {"dataset": dataset.pk, "model_version": api_model(solver.url).pk,
                           "non_reasoning_mode": "plain"})
    assert job.status == "succeeded", job.error
    greeting = Rollout.objects.get(job=job, prompt=prompts[7])
    assert greeting.prompt_text == render_non_reasoning("plain", "Greet friend 1.", chat=False)
    assert PLAIN_WORDS in greeting.prompt_text and COT_WORDS not in greeting.prompt_text
    assert greeting.completion == greeting.answer == "Hello friend 1, take 0!" and greeting.reasoning == ""
    assert greeting.metadata == {"non_reasoning": "plain"}


def test_a_saved_template_replaces_the_built_in_text(solver, dataset, prompts):
    PromptTemplate.objects.create(name="kind-reply", text="Reply kindly: {question}\nReply:")
    job = run("generate", {"dataset": dataset.pk, "model_version": api_model(solver.url).pk,
                           "non_reasoning_mode": "plain", "non_reasoning_template": "kind-reply"})
    assert job.status == "succeeded", job.error
    assert Rollout.objects.get(job=job, prompt=prompts[6]).prompt_text == "Reply kindly: Greet friend 0.\nReply:"


def test_with_the_chat_template_the_text_is_the_users_message_and_plain_drops_an_apis_reasoning(
        server, dataset, prompts):
    server.reply = lambda asked: "<think> Brief. </think> Hi!" if COT_WORDS in asked else "Hi!"
    model = api_model(server.url)
    job = run("generate", {"dataset": dataset.pk, "model_version": model.pk, "template": "chat",
                           "non_reasoning_mode": "cot", "limit": 7})
    assert job.status == "succeeded", job.error
    asked = next(post["body"]["messages"] for post in server.posts()
                 if "Greet friend 0." in post["body"]["messages"][-1]["content"])
    assert asked == render_non_reasoning("cot", "Greet friend 0.", chat=True)
    assert asked == [{"role": "user", "content": NON_REASONING_TEMPLATES["cot"][1].format(question="Greet friend 0.")}]
    greeting = Rollout.objects.get(job=job, prompt=prompts[6])
    assert (greeting.reasoning, greeting.answer) == ("Brief.", "Hi!")
    # A reasoning model's API sends its reasoning apart (DeepSeek's reasoning_content) even when asked for none.
    server.reasoning = "The user says hello."
    job = run("generate", {"dataset": dataset.pk, "model_version": model.pk, "template": "chat",
                           "non_reasoning_mode": "plain", "limit": 7})
    assert job.status == "succeeded", job.error
    greeting = Rollout.objects.get(job=job, prompt=prompts[6])
    assert "The user says hello." in greeting.completion
    assert (greeting.reasoning, greeting.answer) == ("", "Hi!")


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0, sft_steps=0)


def test_the_tiny_model_is_asked_per_kind_in_both_modes(dataset, prompts, tiny_path):
    model = ModelVersion.objects.create(name="tiny", uri=str(tiny_path))
    for mode in ["cot", "plain"]:
        job = run("generate", {"dataset": dataset.pk, "model_version": model.pk, "non_reasoning_mode": mode,
                               "n": 2, "max_tokens": 12, "batch_size": 10, "seed": 1})
        assert job.status == "succeeded", job.error
        rollouts = list(Rollout.objects.filter(job=job).select_related("prompt"))
        assert len(rollouts) == 20
        for rollout in rollouts:
            question = rollout.prompt.question
            if rollout.prompt.reasoning:
                assert rollout.prompt_text == R1_ZERO.format(question=question) and rollout.metadata == {}
            else:
                assert rollout.prompt_text == render_non_reasoning(mode, question, chat=False)
                assert rollout.metadata == {"non_reasoning": mode}
        if mode == "plain":  # whatever the model wrote is the answer; no chain of thought is kept
            plain = [r for r in rollouts if not r.prompt.reasoning]
            assert all(r.reasoning == "" for r in plain)
            assert [r.answer for r in plain] == [r.completion.rsplit("</think>", 1)[-1].strip() for r in plain]


# ---- rejection sampling --------------------------------------------------------------------------


def test_rejection_keeps_non_reasoning_samples_and_composes_the_share(solver, dataset, prompts):
    job = rejection(dataset, api_model(solver.url), non_reasoning_share=0.25, seed=3)
    assert job.status == "succeeded", job.error
    # 6 reasoning prompts: sample 0 right, sample 1 wrong. 4 non-reasoning prompts: both samples pass, m = 1.
    assert job.result["dropped"] == {"incorrect": 6, "over the per-prompt limit": 4}
    assert (job.result["kept_reasoning"], job.result["kept_non_reasoning"]) == (6, 4)
    # The short side (6 reasoning) is taken whole: 6 / 0.75 = 8 examples, 2 of them non-reasoning.
    assert (job.result["reasoning_in_version"], job.result["non_reasoning_in_version"]) == (6, 2)
    assert (job.result["non_reasoning_share"], job.result["non_reasoning_share_asked"]) == (0.25, 0.25)
    version = DatasetVersion.objects.get(pk=job.result["dataset_version"])
    assert version.example_count == 8 and version.provenance["job"] == job.pk
    assert [p["count"] for p in version.provenance["composed_from"]] == [6, 2]
    assert version.provenance["seed"] == 3 and "2 non-reasoning" in version.note
    parts = DatasetVersion.objects.filter(pk__in=job.result["part_versions"].values())
    assert sorted(v.example_count for v in parts) == [4, 6]
    assert DatasetVersion.objects.filter(provenance__job=job.pk).get() == version  # what the pipeline page finds
    greetings = [e for e in version.ordered_examples() if not e.prompt.reasoning]
    assert len(greetings) == 2
    assert all(e.messages[1]["content"].startswith("<think> A friendly greeting, take 0.") for e in greetings)


def test_when_the_non_reasoning_side_is_long_the_reasoning_side_limits_the_mix(solver, dataset, prompts):
    job = rejection(dataset, api_model(solver.url), non_reasoning_share=0.75)
    assert job.status == "succeeded", job.error
    # 4 non-reasoning kept are the short side now: 4 / 0.75 = 5 examples, 1 reasoning sampled from the 6.
    assert (job.result["reasoning_in_version"], job.result["non_reasoning_in_version"]) == (1, 4)
    assert job.result["non_reasoning_share"] == 0.8 and job.result["kept"] == 5


def test_without_a_share_everything_kept_is_one_version_and_plain_answers_get_an_empty_think_block(
        solver, dataset, prompts):
    job = rejection(dataset, api_model(solver.url), non_reasoning_mode="plain")
    assert job.status == "succeeded", job.error
    assert (job.result["kept"], job.result["kept_reasoning"], job.result["kept_non_reasoning"]) == (10, 6, 4)
    assert job.result["non_reasoning_share"] == 0.4 and job.result["non_reasoning_share_asked"] is None
    version = DatasetVersion.objects.get(pk=job.result["dataset_version"])
    contents = [e.messages[1]["content"] for e in version.ordered_examples()]
    assert contents[6] == "<think>\n\n</think>\n\nHello friend 0, take 0!"  # in prompt order: the greetings last
    assert "6 reasoning and 4 non-reasoning examples kept" in version.note
    assert DatasetVersion.objects.filter(dataset__name="sft-mix").count() == 1


def test_a_share_that_cannot_be_met_fails_naming_it_and_keeps_the_frozen_part(solver, dataset, prompts):
    solver.think = False  # asked for a chain of thought, the model never writes one: every greeting is dropped
    job = rejection(dataset, api_model(solver.url), non_reasoning_share=0.25)
    assert job.status == "failed"
    assert job.error.startswith("ShareNotMet: non_reasoning_share: a non-reasoning share of 0.25 needs "
                                "non-reasoning examples, and none was kept")
    assert "sft-mix v1 (reasoning)" in job.error
    part = DatasetVersion.objects.get(dataset__name="sft-mix")
    assert part.example_count == 6 and part.provenance == {"part_of_job": job.pk, "part": "reasoning"}


def test_non_reasoning_samples_are_kept_by_length_filters_and_a_judge_not_by_correctness(dataset, prompts):
    greeting = prompts[6]
    job = Job.objects.create(kind="rejection_sample")

    def rollout(completion="<think> Short. </think> Hello!", **columns):
        return Rollout(job=job, prompt=greeting, completion=completion, is_correct=False,
                       **{"finish_reason": "stop", **columns})

    filters = ["truncated", "code_in_reasoning", "repetition_loop"]
    assert drop_reason(rollout(), filters) is None  # incorrect by the math recipe, and kept
    assert drop_reason(rollout(finish_reason="length"), filters) == "truncated"
    assert drop_reason(rollout("Hello!"), filters) == "truncated"  # cot without its think block
    plain = rollout("Hello!", answer="Hello!", metadata={"non_reasoning": "plain"})
    assert drop_reason(plain, filters) is None
    assert drop_reason(rollout("<think>\n```python\nprint(1)\n```\n</think> Hi"), filters) == "code_in_reasoning"
    judged = {"llm_judge": {"value": 0.0, "weight": 1.0, "details": {"verdict": "incorrect"}}}
    assert drop_reason(rollout(rewards=judged), filters) == "judged incorrect"
    no_verdict = {"llm_judge": {"value": None, "weight": 1.0, "details": {"reason": "timeout"}}}
    assert drop_reason(rollout(rewards=no_verdict), filters) is None


def test_mix_counts_take_the_short_side_whole():
    assert mix_counts(600, 200, 0.25) == (600, 200)
    assert mix_counts(600, 500, 0.25) == (600, 200)  # non-reasoning sampled down
    assert mix_counts(300, 500, 0.25) == (300, 100)
    assert mix_counts(10, 1, 0.25) == (3, 1)
    assert mix_counts(10, 4, 0.0) == (10, 0) and mix_counts(10, 4, 1.0) == (0, 4)
    with pytest.raises(ShareNotMet, match="needs non-reasoning examples"):
        mix_counts(10, 0, 0.25)
    with pytest.raises(ShareNotMet, match="needs reasoning examples"):
        mix_counts(0, 4, 0.5)


# ---- bad input: the launch form, the browser and the API --------------------------------------------


def test_bad_mode_and_share_are_refused_naming_the_field(solver, dataset, prompts):
    model = api_model(solver.url)
    base = {"dataset": dataset.pk, "model_version": model.pk, "output_dataset": "sft-mix"}
    cases = [({"non_reasoning_share": 1.5}, "non_reasoning_share", "less than or equal to 1"),
             ({"non_reasoning_share": -0.1}, "non_reasoning_share", "greater than or equal to 0"),
             ({"non_reasoning_mode": "verbose"}, "non_reasoning_mode", "not one of the available choices"),
             ({"non_reasoning_template": "missing"}, "non_reasoning_template", "no saved template 'missing'")]
    for params, field, words in cases:
        with pytest.raises(ValidationError) as exc:
            launching.launch("rejection_sample", base | params)
        assert words in " ".join(exc.value.message_dict[field])
    with pytest.raises(ValidationError) as exc:
        launching.launch("generate", base | {"non_reasoning_mode": "verbose"})
    assert "non_reasoning_mode" in exc.value.message_dict
    only_sums = Dataset.objects.create(name="sums")
    Prompt.objects.create(dataset=only_sums, question="What is 1 + 1?", content_hash="s1")
    with pytest.raises(ValidationError) as exc:
        launching.launch("rejection_sample", base | {"dataset": only_sums.pk, "non_reasoning_share": 0.25})
    assert exc.value.message_dict["non_reasoning_share"] == [
        "sums has no prompt marked non-reasoning: mark some on the dataset's page, or leave the share empty"]
    with pytest.raises(ValidationError) as exc:  # the first 6 prompts are all reasoning ones
        launching.launch("rejection_sample", base | {"limit": 6, "non_reasoning_share": 0.25})
    assert "among the first 6" in exc.value.message_dict["non_reasoning_share"][0]
    assert not Job.objects.exists()


@pytest.mark.django_db  # in one transaction: the launched job is never handed to a worker
def test_the_launch_page_shows_the_fields_and_refuses_a_bad_share(admin_client, solver, dataset, prompts):
    url = reverse("job_new", args=["rejection_sample"])
    html = admin_client.get(url).content.decode()
    assert 'name="non_reasoning_share"' in html and 'name="non_reasoning_mode"' in html
    assert 'name="non_reasoning_mode"' in admin_client.get(reverse("job_new", args=["generate"])).content.decode()
    model = api_model(solver.url)
    response = admin_client.post(url, {"dataset": dataset.pk, "model_version": model.pk, "output_dataset": "mix",
                                       "non_reasoning_share": "2", "non_reasoning_mode": "cot"})
    assert response.status_code == 400
    assert list(response.context["form"].errors) == ["non_reasoning_share"]
    response = admin_client.post(url, {"dataset": dataset.pk, "model_version": model.pk, "output_dataset": "mix",
                                       "non_reasoning_share": "0.25", "non_reasoning_mode": "cot"})
    assert response.status_code == 302
    job = Job.objects.get()
    assert (job.params["non_reasoning_share"], job.params["non_reasoning_mode"]) == (0.25, "cot")


@pytest.mark.django_db  # in one transaction: the launched job is never handed to a worker
def test_the_api_takes_the_share_and_mode_and_names_bad_ones(client, users, solver, dataset, prompts):
    _, secret = tokens.issue_token(users["admin"], "test")
    model = api_model(solver.url)

    def post(params):
        body = {"kind": "rejection_sample", "params": {"dataset": dataset.pk, "model_version": model.pk,
                                                       "output_dataset": "mix", **params}}
        return client.post("/api/jobs", json.dumps(body), content_type="application/json",
                           headers={"Authorization": f"Bearer {secret}"})

    for params, field in [({"non_reasoning_share": 1.5}, "non_reasoning_share"),
                          ({"non_reasoning_mode": "verbose"}, "non_reasoning_mode"),
                          ({"limit": 6, "non_reasoning_share": 0.5}, "non_reasoning_share")]:  # the form's refusal
        response = post(params)
        assert response.status_code == 422
        assert [e["loc"] for e in response.json()["detail"]] == [["body", "params", field]]
    assert not Job.objects.exists()
    created = post({"non_reasoning_share": 0.25, "non_reasoning_mode": "plain"})
    assert created.status_code == 201, created.content
    job = Job.objects.get()
    assert (job.params["non_reasoning_share"], job.params["non_reasoning_mode"]) == (0.25, "plain")
