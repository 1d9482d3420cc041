"""The generation job against an OpenAI-compatible server on loopback: batches, retries, resume."""

import pytest

from apps.core.bulk import bulk_insert
from apps.datasets.models import Prompt
from apps.jobs import kinds
from apps.jobs.runner import execute
from apps.rollouts.models import RewardRecipe, Rollout
from apps.training.models import ModelVersion
from tests.fake_openai import MODEL, FakeServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.stop()


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
    job = kinds.launch("generate", {"dataset": dataset.pk, "model_version": model.pk, "n": 2, "batch_size": 2,
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
    assert kinds.retry(job)
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
            kinds.launch("generate", {"dataset": dataset.pk, "model_version": model.pk, **params})
        assert field in exc.value.message_dict
