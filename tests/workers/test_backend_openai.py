"""The OpenAI-compatible backend against a real HTTP server on loopback.

FakeServer is a small OpenAI-compatible server (stdlib ThreadingHTTPServer, port 0)
whose behaviour each test sets: a script of answers for the next requests (an error
status, a hang, a malformed body), then normal completions. It records every request
and the most requests it had in flight at once. No database.
"""

import socket
import time
from email.utils import formatdate

import pytest

from tests.fake_openai import MODEL
from workers.generation.base import (
    BackendError,
    BackendRefused,
    BackendUnavailable,
    SamplingParams,
    join_reasoning,
)
from workers.generation.openai_backend import (
    OpenAIBackend,
    retry_after_seconds,
    split_tokens,
)


@pytest.fixture
def make_backend():
    """An OpenAIBackend with small timeouts and backoffs; closed after the test."""
    made = []

    def make(url, **options):
        options = {"timeout_s": 2, "max_retries": 2, "backoff_s": 0.01, **options}
        backend = OpenAIBackend(url, MODEL, **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Normal answers


def test_completions_for_string_prompts(server, make_backend):
    backend = make_backend(server.url, api_key="sk-test")
    params = SamplingParams(n=1, temperature=0.7, top_p=0.9, max_tokens=64, seed=7, stop=("</answer>",))
    out = backend.generate(["two words", "three more words"], params)

    assert [len(c) for c in out] == [1, 1]
    first = out[0][0]
    assert first.text == "two words -> sample 0"
    assert (first.prompt_tokens, first.completion_tokens, first.finish_reason) == (2, 5, "stop")
    assert first.reasoning is None
    assert out[1][0].text == "three more words -> sample 0" and out[1][0].prompt_tokens == 3
    request = next(r for r in server.posts() if r["body"]["prompt"] == "two words")
    assert request["path"] == "/v1/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    assert request["body"] == {"model": MODEL, "prompt": "two words", "n": 1, "temperature": 0.7, "top_p": 0.9,
                               "max_tokens": 64, "seed": 7, "stop": ["</answer>"]}


def test_chat_keeps_reasoning_content(server, make_backend):
    server.reasoning = "Let me think: 2 + 2 = 4."
    backend = make_backend(server.url)
    messages = [{"role": "user", "content": "What is 2 + 2?"}]
    [[completion]] = backend.generate([messages], SamplingParams())

    assert completion.reasoning == "Let me think: 2 + 2 = 4."
    assert completion.text == join_reasoning("Let me think: 2 + 2 = 4.", "answer 0 to What is 2 + 2?")
    assert completion.text.startswith("<think>\nLet me think")
    [request] = server.posts()
    assert request["path"] == "/v1/chat/completions"
    assert request["body"]["messages"] == messages
    assert "seed" not in request["body"] and "stop" not in request["body"]
    assert "Authorization" not in request["headers"]  # no key given


def test_n_completions_share_the_usage(server, make_backend):
    server.finish_reasons = ["stop", "length", "content_filter", None]
    backend = make_backend(server.url)
    [completions] = backend.generate(["a prompt"], SamplingParams(n=4))

    assert [c.text for c in completions] == [f"a prompt -> sample {i}" + " more" * i for i in range(4)]
    assert [c.finish_reason for c in completions] == ["stop", "length", "error", "stop"]
    assert all(c.prompt_tokens == 2 for c in completions)
    tokens = [c.completion_tokens for c in completions]
    assert sum(tokens) == sum(len(c.text.split()) for c in completions)  # the aggregate, split without loss
    assert tokens == sorted(tokens)  # longer texts get more
    assert len(server.posts()) == 1


def test_fewer_choices_than_n_are_topped_up(server, make_backend):
    server.max_choices = 1  # a chat server that ignores n
    backend = make_backend(server.url)
    [completions] = backend.generate([[{"role": "user", "content": "hi"}]], SamplingParams(n=3, seed=5))

    assert len(completions) == 3
    assert all(c.completion_tokens == 4 and c.prompt_tokens == 1 for c in completions)
    bodies = [r["body"] for r in server.posts()]
    assert [b["n"] for b in bodies] == [3, 2, 1]
    assert [b["seed"] for b in bodies] == [5, 6, 7]  # not the same sample three times


# Retries


def test_429_waits_for_retry_after(server, make_backend):
    server.script = [(429, {"error": {"message": "rate limited"}}, {"Retry-After": "0.3"})]
    backend = make_backend(server.url, backoff_s=0.001)
    start = time.monotonic()
    [[completion]] = backend.generate(["x"], SamplingParams())

    assert time.monotonic() - start >= 0.3
    assert completion.text == "x -> sample 0"
    assert len(server.posts()) == 2


def test_500_twice_then_success(server, make_backend):
    server.script = [(500, {"error": {"message": "boom"}}, {})] * 2
    backend = make_backend(server.url, max_retries=2)
    [[completion]] = backend.generate(["x"], SamplingParams())

    assert completion.text == "x -> sample 0"
    assert len(server.posts()) == 3


def test_hanging_answer_times_out_then_succeeds(server, make_backend, caplog):
    server.script = [("hang", 1.0)]
    backend = make_backend(server.url, timeout_s=0.2)
    [[completion]] = backend.generate(["x"], SamplingParams())

    assert completion.text == "x -> sample 0"
    assert len(server.posts()) == 2  # gave up on the hanging answer and asked again
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 1 and "no answer within 0.2s" in retries[0]


def test_permanent_500_fails_after_the_retries(server, make_backend):
    server.script = [(500, {"object": "error", "message": "CUDA out of memory"}, {})] * 10
    backend = make_backend(server.url, max_retries=3)
    with pytest.raises(BackendError) as failure:
        backend.generate(["x"], SamplingParams())

    assert not isinstance(failure.value, BackendUnavailable)
    message = str(failure.value)
    assert "HTTP 500" in message and "4 attempts" in message and "CUDA out of memory" in message
    assert len(server.posts()) == 4


def test_stale_kept_alive_connections_are_replaced(server, make_backend, caplog):
    server.drop_idle = True  # every pooled connection is dead by its next use
    backend = make_backend(server.url, max_concurrency=1)
    out = backend.generate(["a", "b", "c"], SamplingParams())

    assert [c[0].text for c in out] == ["a -> sample 0", "b -> sample 0", "c -> sample 0"]
    assert len(server.posts()) == 3
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]  # replaced, not retried after a backoff


# Failures that retrying will not fix


def test_401_is_unavailable_and_hides_the_key(server, make_backend):
    server.script = [(401, {"error": {"message": "Incorrect API key provided: sk-secret-123"}}, {})]
    backend = make_backend(server.url, api_key="sk-secret-123")
    with pytest.raises(BackendUnavailable) as failure:
        backend.generate(["x"], SamplingParams())

    message = str(failure.value)
    assert "refused the API key (401)" in message
    assert "sk-secret-123" not in message and "Incorrect API key provided: ***" in message
    assert len(server.posts()) == 1


def test_404_names_the_model(server, make_backend):
    server.script = [(404, {"error": {"message": f"The model `{MODEL}` does not exist."}}, {})]
    backend = make_backend(server.url)
    with pytest.raises(BackendUnavailable, match=f"model '{MODEL}' not found \\(404"):
        backend.generate(["x"], SamplingParams())


def test_400_is_not_retried(server, make_backend):
    server.script = [(400, {"object": "error", "message": "This model's maximum context length is 4096 tokens"}, {})]
    backend = make_backend(server.url)
    with pytest.raises(BackendRefused, match="HTTP 400: This model's maximum context length") as refused:
        backend.generate(["x"], SamplingParams())
    assert len(server.posts()) == 1 and not refused.value.retryable


def test_unreachable_port_is_unavailable_at_once(make_backend, caplog):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    backend = make_backend(url, max_retries=4, backoff_s=1.0)
    with pytest.raises(BackendUnavailable) as failure:
        backend.generate(["x", "y"], SamplingParams())

    assert str(failure.value) == f"cannot reach {url}: connection refused"
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]  # no backoff, no second attempt


@pytest.mark.parametrize("body, expected", [
    (b"<html>Bad gateway oops</html>", "not JSON: '<html>Bad gateway oops</html>'"),
    ({"object": "list", "data": []}, "no choices in"),
    ({"choices": [{"index": 0}]}, "unexpected choice"),
])
def test_malformed_body(server, make_backend, body, expected):
    server.script = [(200, body, {})]
    backend = make_backend(server.url)
    with pytest.raises(BackendError, match="malformed response") as failure:
        backend.generate(["x"], SamplingParams())
    assert expected in str(failure.value)
    assert not isinstance(failure.value, BackendUnavailable)


# Concurrency


def test_requests_run_concurrently_up_to_the_limit(server, make_backend):
    server.delay = 0.05
    backend = make_backend(server.url, max_concurrency=4)
    prompts = [f"prompt {i}" for i in range(16)]
    out = backend.generate(prompts, SamplingParams())

    assert [c[0].text for c in out] == [f"{p} -> sample 0" for p in prompts]  # in prompt order
    assert 1 < server.max_in_flight <= 4


def test_one_at_a_time_reuses_one_connection(server, make_backend):
    server.delay = 0.02
    backend = make_backend(server.url, max_concurrency=1)
    out = backend.generate(["a", "b", "c", "d"], SamplingParams())

    assert [c[0].text for c in out] == ["a -> sample 0", "b -> sample 0", "c -> sample 0", "d -> sample 0"]
    assert server.max_in_flight == 1
    assert len({r["client"] for r in server.posts()}) == 1  # kept alive


# Context length and token counts


def test_context_length_from_the_constructor(server, make_backend):
    backend = make_backend(server.url, context_length=32768)
    assert backend.context_length() == 32768
    assert server.requests == []


def test_context_length_from_models_asked_once(server, make_backend):
    server.models = [{"id": "other", "max_model_len": 1}, {"id": MODEL, "max_model_len": 4096}]
    backend = make_backend(server.url)
    assert backend.context_length() == 4096
    assert backend.context_length() == 4096
    assert [r["path"] for r in server.requests] == ["/v1/models"]
    assert backend.count_tokens("any prompt") is None


def test_context_length_unknown(server, make_backend):
    server.models = [{"id": MODEL, "object": "model"}]  # a hosted API: no max_model_len
    assert make_backend(server.url).context_length() is None
    assert make_backend(f"http://127.0.0.1:{closed_port()}/v1").context_length() is None


# Helpers


def test_split_tokens_adds_up():
    assert split_tokens(None, [3, 4]) == [None, None]
    assert split_tokens(7, [10]) == [7]
    assert split_tokens(10, [4, 4]) == [5, 5]
    assert sum(split_tokens(101, [0, 5, 17, 3])) == 101
    assert split_tokens(3, [0, 0, 0, 0, 0]).count(1) == 3


def test_retry_after_forms():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("0.5") == 0.5
    assert 5 < retry_after_seconds(formatdate(time.time() + 10, usegmt=True)) <= 10
    assert retry_after_seconds(formatdate(time.time() - 10, usegmt=True)) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


# DeepSeek's reasoning model, as its API documents it: reasoning_content beside content, and the reasoning
# tokens counted in usage.completion_tokens_details. The body is built from the openai package's own types.


def deepseek_answer(reasoning: str, content: str, reasoning_tokens: int) -> dict:
    from openai.types.chat import ChatCompletion, ChatCompletionMessage
    from openai.types.chat.chat_completion import Choice
    from openai.types.completion_usage import CompletionTokensDetails, CompletionUsage

    message = ChatCompletionMessage(role="assistant", content=content, reasoning_content=reasoning)
    usage = CompletionUsage(prompt_tokens=21, completion_tokens=reasoning_tokens + 9,
                            total_tokens=reasoning_tokens + 30,
                            completion_tokens_details=CompletionTokensDetails(reasoning_tokens=reasoning_tokens))
    return ChatCompletion(id="chatcmpl-1", created=1_700_000_000, model="deepseek-reasoner", object="chat.completion",
                          choices=[Choice(index=0, finish_reason="stop", message=message)],
                          usage=usage).model_dump(exclude_none=True)


def test_deepseeks_reasoning_model_answer_lands_as_reasoning_answer_and_reasoning_tokens(server, make_backend):
    from apps.rollouts.rows import rollout_row
    from workers.rewards.base import Sample
    from workers.rewards.recipes import DEFAULT_RECIPES, Recipe

    reasoning = "Natalia sold 48 in April and half as many in May: 48 + 24 = 72."
    server.script = [(200, deepseek_answer(reasoning, "She sold \\boxed{72} clips altogether.", 17), {})]
    [[completion]] = make_backend(server.url).generate([[{"role": "user", "content": "How many clips?"}]],
                                                       SamplingParams())

    assert (completion.reasoning, completion.reasoning_tokens, completion.completion_tokens) == (reasoning, 17, 26)
    row = rollout_row(job_id=1, prompt_id=1, completion=completion.text, reasoning=completion.reasoning)
    assert (row["reasoning"], row["answer"]) == (reasoning, "She sold \\boxed{72} clips altogether.")
    scored = Recipe.from_spec(DEFAULT_RECIPES["r1-chat-math"]).score(Sample(completion.text, reference="72"))
    assert scored["total"] == 2.0  # R1's chat format, and the boxed answer after the reasoning
    zero = Recipe.from_spec(DEFAULT_RECIPES["r1-zero-math"]).score(Sample(completion.text, reference="72"))
    assert zero["components"]["format"]["value"] == 0.0  # R1-Zero's tags are not R1's chat format
