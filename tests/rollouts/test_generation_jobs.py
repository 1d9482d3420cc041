"""The generation job against an OpenAI-compatible server on loopback: batches, retries, resume."""

import pytest

from apps.core.bulk import bulk_insert
from apps.datasets.models import ModelVersion, Prompt
from apps.jobs import launching
from apps.jobs.runner import execute
from apps.rollouts.models import RewardRecipe, Rollout
from tests.fake_openai import MODEL, FakeServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def prompts(dataset):
    bulk_insert(Prompt, [{"dataset_id": dataset.pk, "question": f"What is {i} + 1?", "reference_answer": str(i + 1),
                          "content_hash": f"h{i}"} for i in range(6)])
    return list(Prompt.objects.order_by("pk"))


def api_model(url, **options):
    # No retries inside the backend, so a failing request reaches the job's batch retry.
    return ModelVersion.objects.create(name="api", uri=MODEL, backend="openai", config={
        "base_url": url, "openai": {"max_retries": 0, "timeout_s": 2, "backoff_s": 0.01, **options}})


def generate(dataset, model, **params):
    job = launching.launch("generate", {"dataset": dataset.pk, "model_version": model.pk, "n": 2, "batch_size": 2,
                                    "recipe": RewardRecipe.latest("r1-zero-math").pk, **params}, enqueue=False)
    execute(job.pk, worker="test")
    job.refresh_from_db()
    return job


def test_it_writes_scored_rollouts_batch_by_batch(server, dataset, prompts):
    job = generate(dataset, api_model(server.url))
    assert job.status == "succeeded", job.error
    rollouts = Rollout.objects.filter(job=job)
    assert rollouts.count() == 12
    first = rollouts.get(prompt=prompts[0], sample_index=1)
    assert first.prompt_text.startswith("A conversation between User and Assistant.")
    assert "What is 0 + 1?" in first.prompt_text
    assert first.completion.endswith("-> sample 1 more")
    assert first.completion_tokens and first.prompt_tokens and first.finish_reason == "stop"
    assert first.reward_recipe.name == "r1-zero-math" and first.format_ok is False and first.is_correct is False
    assert job.result["rollouts_written"] == 12 and job.result["tokens_per_s"] > 0
    assert 0 <= job.result["db_write_share"] < 1
    assert len(server.posts()) == 6  # one request per prompt, n=2 each


def test_a_failed_batch_is_retried_and_costs_only_that_batch(server, dataset, prompts):
    server.script = [(500, {"error": {"message": "CUDA out of memory"}}, {})]
    job = generate(dataset, api_model(server.url))
    assert job.status == "succeeded", job.error
    assert job.result["batch_retries"] == 1
    assert Rollout.objects.filter(job=job).count() == 12


def test_a_refused_request_fails_the_job_without_retrying_the_batch(server, dataset, prompts):
    """A 4xx other than 408/409/429 (here: a prompt over the context) would be refused again, the same way."""
    server.script = [(400, {"object": "error", "message": "maximum context length is 4096 tokens"}, {})]
    job = generate(dataset, api_model(server.url))
    assert job.status == "failed" and "HTTP 400: maximum context length" in job.error
    asked = [post["body"]["prompt"] for post in server.posts()]
    assert len(asked) == len(set(asked)) and "retry" not in job.log  # no prompt was asked twice


def test_an_unreachable_api_fails_the_job_with_a_clear_message(dataset, prompts):
    job = generate(dataset, api_model("http://127.0.0.1:9/v1"))
    assert job.status == "failed"
    assert "cannot reach http://127.0.0.1:9/v1" in job.error
    assert Rollout.objects.filter(job=job).count() == 0


def test_a_crashed_job_resumes_without_duplicates(server, dataset, prompts):
    # The first batch lands, then the server fails for good: the job fails with partial progress.
    server.script = [(200, None, {})] * 2 + [(500, {"error": {"message": "down"}}, {})] * 50
    job = generate(dataset, api_model(server.url), max_batch_retries=1)
    assert job.status == "failed" and "down" in job.error
    assert Rollout.objects.filter(job=job).count() == 4 and job.progress_done == 2

    server.script = []
    requests_before = len(server.posts())
    assert launching.retry(job)
    execute(job.pk, worker="test")
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    assert Rollout.objects.filter(job=job).count() == 12
    assert len(server.posts()) - requests_before == 4  # only the prompts without samples were asked again
    assert "resuming: 2 prompts already have their 2 samples" in job.log


def test_bad_sampling_parameters_name_the_field(dataset, prompts, server):
    from django.core.exceptions import ValidationError

    model = api_model(server.url)
    for params, field in [({"temperature": 5}, "temperature"), ({"top_p": 0}, "top_p"), ({"n": 0}, "n"),
                          ({"template": "nope"}, "template")]:
        with pytest.raises(ValidationError) as exc:
            launching.launch("generate", {"dataset": dataset.pk, "model_version": model.pk, **params})
        assert field in exc.value.message_dict


class SolvingServer(FakeServer):
    """Answers "What is i + 1?" in the R1-Zero format: right on even samples, wrong on odd ones."""

    def answer(self, path, body):
        if path == "/v1/models":
            return super().answer(path, body)
        i = int(body["prompt"].split("What is ")[1].split(" +")[0])
        texts = [f"<think> {i} plus one is {i + 1 + s % 2}. </think> <answer> {i + 1 + s % 2} </answer>"
                 for s in range(body["n"])]
        return {"choices": [{"index": s, "text": t, "finish_reason": "stop"} for s, t in enumerate(texts)],
                "usage": {"prompt_tokens": 40, "completion_tokens": 12 * len(texts)}}


@pytest.fixture
def solver():
    fake = SolvingServer()
    yield fake
    fake.stop()


def test_rejection_sampling_keeps_correct_readable_samples_in_a_frozen_version(solver, dataset, prompts):
    from apps.datasets.models import DatasetVersion

    job = launching.launch("rejection_sample", {
        "dataset": dataset.pk, "model_version": api_model(solver.url).pk, "n": 4, "keep_per_prompt": 1,
        "output_dataset": "sft-mix", "batch_size": 3}, enqueue=False)
    execute(job.pk, worker="test")
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    # 6 prompts x 4 samples: the 12 odd samples are wrong; of 2 identical right ones per prompt, one is a duplicate.
    assert job.result["dropped"] == {"incorrect": 12, "duplicate": 6, "over the per-prompt limit": 0}
    version = DatasetVersion.objects.get(pk=job.result["dataset_version"])
    assert (version.dataset.name, version.number, version.example_count) == ("sft-mix", 1, 6)
    example = next(version.ordered_examples())
    assert example.messages[0] == {"role": "user", "content": "What is 0 + 1?"}
    assert example.messages[1]["content"].endswith("<answer> 1 </answer>")
    assert example.source_rollout.job_id == job.pk and example.source_rollout.is_correct
    assert version.provenance["job"] == job.pk and "truncated" in version.provenance["filters"]


def test_evaluation_reports_pass_at_k_and_majority_vote(solver, dataset, prompts):
    from apps.training.models import Evaluation

    model = api_model(solver.url)
    job = launching.launch("evaluate", {"dataset": dataset.pk, "model_version": model.pk, "n": 4, "pass_k": 2},
                           enqueue=False)
    execute(job.pk, worker="test")
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    evaluation = Evaluation.objects.get(job=job)
    assert (evaluation.model_version, evaluation.dataset, evaluation.k) == (model, dataset, 4)
    assert evaluation.metrics["pass@1"] == 0.5  # half the samples of every prompt are right
    assert evaluation.metrics["pass@2"] == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    assert evaluation.metrics["cons@4"] == 1.0  # a 2-2 tie goes to the answer seen first, the right one
    assert evaluation.per_prompt[str(prompts[0].pk)] == {"n": 4, "correct": 2, "majority_correct": True,
                                                         "majority_votes": 2}
