"""The transformers backend on the tiny model, and a generation job on it through a real Celery worker."""

import pytest

from workers.generation.base import SamplingParams
from workers.generation.templates import R1_ZERO, render
from workers.generation.tiny import build_tiny_model
from workers.generation.transformers_backend import TransformersBackend


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="module")
def backend(tiny_path):
    return TransformersBackend(str(tiny_path), device="cpu", batch_size=4)


def test_it_samples_n_per_prompt_with_counts_and_finish_reasons(backend):
    prompts = [render(R1_ZERO, f"What is {i} + 2?") for i in range(3)]
    results = backend.generate(prompts, SamplingParams(n=2, max_tokens=16, seed=1))
    assert [len(group) for group in results] == [2, 2, 2]
    for group, prompt in zip(results, prompts):
        for completion in group:
            assert completion.prompt_tokens == backend.count_tokens(prompt)
            assert 0 < completion.completion_tokens <= 16
            assert completion.finish_reason in ("stop", "length")
            if completion.finish_reason == "length":
                assert completion.completion_tokens == 16


def test_the_same_seed_gives_the_same_samples(backend):
    prompts = [render(R1_ZERO, "What is 3 + 4?")] * 2
    first = backend.generate(prompts, SamplingParams(n=2, max_tokens=12, seed=5))
    again = backend.generate(prompts, SamplingParams(n=2, max_tokens=12, seed=5))
    assert [c.text for g in first for c in g] == [c.text for g in again for c in g]


def test_greedy_decoding_when_temperature_is_zero(backend):
    prompts = [render(R1_ZERO, "What is 1 + 1?")]
    a = backend.generate(prompts, SamplingParams(n=2, temperature=0.0, max_tokens=10))
    assert a[0][0].text == a[0][1].text


def test_chat_prompts_use_the_models_chat_template(backend):
    rendered = backend.render([{"role": "user", "content": "hi"}])
    assert rendered.startswith("<|im_start|>user\nhi") and rendered.rstrip().endswith("<|im_start|>assistant")


@pytest.mark.django_db(transaction=True)
def test_a_generation_job_on_a_worker_skips_prompts_longer_than_the_context(celery_worker, dataset, tiny_path):
    from apps.core.bulk import bulk_insert
    from apps.datasets.models import ModelVersion, Prompt
    from apps.jobs import launching
    from apps.rollouts.models import RewardRecipe, Rollout
    from tests.conftest import wait_for_job

    long_question = "seven " * 5000  # far past the tiny model's context
    bulk_insert(Prompt, [{"dataset_id": dataset.pk, "question": q, "reference_answer": "1", "content_hash": str(i)}
                         for i, q in enumerate(["What is 0 + 1?", long_question, "What is 5 - 4?"])])
    model = ModelVersion.objects.create(name="tiny", uri=str(tiny_path))
    job = launching.launch("generate", {"dataset": dataset.pk, "model_version": model.pk, "n": 3, "max_tokens": 24,
                                    "recipe": RewardRecipe.latest("r1-zero-math").pk})
    wait_for_job(job, timeout=120)
    assert job.status == "succeeded", job.error
    long_prompt = Prompt.objects.get(dataset=dataset, content_hash="1")
    assert Rollout.objects.filter(job=job).count() == 6
    assert not Rollout.objects.filter(job=job, prompt=long_prompt).exists()
    assert "the model's context is" in job.result["skipped"][str(long_prompt.pk)]
    assert job.result["skipped_prompts"] == 1 and job.result["tokens_per_s"] > 0
    assert Rollout.objects.filter(job=job, reward_recipe__isnull=False, model_version=model).count() == 6


def test_sampling_applies_no_hidden_top_k():
    from workers.generation.base import SamplingParams
    from workers.generation.transformers_backend import sampling_options

    # transformers samples from the top 50 tokens unless told otherwise; vLLM and TRL do not.
    assert sampling_options(SamplingParams(n=1, temperature=1.0, top_p=1.0, max_tokens=8))["top_k"] == 0
    assert sampling_options(SamplingParams(n=1, temperature=0.0, top_p=1.0, max_tokens=8)) == {"do_sample": False}
