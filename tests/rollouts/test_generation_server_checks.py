"""What the generation job learns about an OpenAI-compatible server: at launch, whether it has the
/completions endpoint a raw-text template needs (DeepSeek's API is chat only); while running, which
parameters it refuses (said in the job's log) and its streamed answers. A real server on loopback."""

import socket

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from apps.core.bulk import bulk_insert
from apps.datasets.models import ModelVersion, Prompt
from apps.jobs import launching
from apps.jobs.models import Job
from apps.jobs.runner import execute
from apps.rollouts.models import Rollout

pytestmark = pytest.mark.django_db(transaction=True)

NO_COMPLETIONS = "has no completions endpoint (it answers chat only): choose the chat template"


@pytest.fixture
def prompts(dataset):
    bulk_insert(Prompt, [{"dataset_id": dataset.pk, "question": f"What is {i} + 1?", "reference_answer": str(i + 1),
                          "content_hash": f"h{i}"} for i in range(3)])
    return list(Prompt.objects.order_by("pk"))


def api_model(url, name="api", **options):
    return ModelVersion.objects.create(name=name, uri="r1-test", backend="openai", config={
        "base_url": url, "openai": {"max_retries": 0, "timeout_s": 2, "backoff_s": 0.01, **options}})


def launch(dataset, model, **params) -> Job:
    return launching.launch("generate", {"dataset": dataset.pk, "model_version": model.pk, **params}, enqueue=False)


def test_a_raw_template_on_a_chat_only_server_is_refused_at_launch(server, dataset, prompts):
    server.no_completions = 404  # DeepSeek's API: /chat/completions only
    model = api_model(server.url)
    with pytest.raises(ValidationError) as refused:
        launch(dataset, model, template="r1-zero")

    [message] = refused.value.message_dict["template"]
    assert message == f"{server.url} {NO_COMPLETIONS}"
    assert [p["path"] for p in server.probes()] == ["/v1/completions"] and server.posts() == []  # no tokens spent
    assert not Job.objects.exists()
    assert launch(dataset, model, template="chat").status == "queued"  # the chat template needs no probe
    assert len(server.probes()) == 1


def test_the_launch_page_shows_it_on_the_template_field(server, dataset, prompts, admin_client):
    server.no_completions = 405
    model = api_model(server.url)
    response = admin_client.post(reverse("job_new", args=["generate"]), {
        "dataset": dataset.pk, "model_version": model.pk, "template": "r1-zero"})

    assert response.status_code == 400
    assert NO_COMPLETIONS in response.content.decode()
    assert response.context["form"].errors["template"] == [f"{server.url} {NO_COMPLETIONS}"]
    assert not Job.objects.exists()


def test_a_server_with_completions_or_none_answering_is_not_refused(server, dataset, prompts):
    assert launch(dataset, api_model(server.url), template="r1-zero").status == "queued"
    assert len(server.probes()) == 1  # it answered 400 (missing fields): the endpoint is there
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert launch(dataset, api_model(f"http://127.0.0.1:{closed}/v1", "down"), template="r1-zero").status == "queued"


def test_a_deepseek_like_server_streams_and_its_refused_parameter_is_in_the_job_log(server, dataset, prompts):
    server.no_completions = 404
    server.reasoning = "One more than the number."
    server.refuses = {"logprobs": {"message": "deepseek-reasoner does not support the parameter `logprobs`",
                                   "type": "invalid_request_error", "param": None, "code": "invalid_request_error"}}
    model = api_model(server.url, stream=True, extra_params={"logprobs": True}, max_concurrency=1)
    job = launch(dataset, model, template="chat", n=2, batch_size=2)
    execute(job.pk, worker="test")
    job.refresh_from_db()

    assert job.status == "succeeded", job.error
    assert job.log.count("does not support the parameter 'logprobs'") == 1
    assert [("logprobs" in p["body"], p["body"]["stream"]) for p in server.posts()] == [(True, True)] + [
        (False, True)] * 3
    rollouts = Rollout.objects.filter(job=job).order_by("prompt_id", "sample_index")
    assert rollouts.count() == 6
    first, second = rollouts[:2]
    assert (first.reasoning, first.answer) == ("One more than the number.", "answer 0 to What is 0 + 1?")
    assert first.completion.startswith("<think>\nOne more than the number.\n</think>")
    assert first.finish_reason == "stop" and first.prompt_tokens == 5  # the usage of the stream's last chunk
    assert first.completion_tokens + second.completion_tokens == 16
