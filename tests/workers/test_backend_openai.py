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

from tests.fake_openai import MODEL, sse_events, stream_chunks
from workers.generation.base import (
    BackendError,
    BackendRefused,
    BackendUnavailable,
    SamplingParams,
    join_reasoning,
)
from workers.generation.openai_backend import (
    OpenAIBackend,
    has_completions_endpoint,
    retry_after_seconds,
    split_tokens,
    unsupported_param,
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
        backend.generate([[{"role": "user", "content": "x"}]], SamplingParams())


def test_404_from_completions_suggests_the_chat_template(server, make_backend):
    server.no_completions = 404  # a chat-only API, as DeepSeek's
    with pytest.raises(BackendUnavailable, match="no completions endpoint \\(a chat-only server needs the chat"):
        make_backend(server.url).generate(["x"], SamplingParams())


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


# Parameters a server refuses: dropped once, remembered, said in the log


def error_object(message: str, param: str | None = None, code: str | None = None) -> dict:
    from openai.types.shared import ErrorObject

    return ErrorObject(message=message, type="invalid_request_error", param=param, code=code).model_dump()


# deepseek-reasoner documents that logprobs and top_logprobs trigger an error; the wording is ours.
DEEPSEEK_LOGPROBS = error_object("deepseek-reasoner does not support the parameter `logprobs`",
                                 code="invalid_request_error")


def test_a_parameter_deepseeks_reasoner_refuses_is_dropped_and_remembered(server, make_backend):
    server.refuses = {"logprobs": DEEPSEEK_LOGPROBS}
    backend = make_backend(server.url, max_concurrency=1, extra_params={"logprobs": True})
    said = []
    backend.notice = said.append
    messages = [[{"role": "user", "content": f"question {i}"}] for i in range(3)]
    out = backend.generate(messages, SamplingParams(temperature=0.6))

    assert [c[0].text for c in out] == [f"answer 0 to question {i}" for i in range(3)]
    bodies = [r["body"] for r in server.posts()]
    assert len(bodies) == 4  # the refused request, it again without logprobs, then the two others
    assert bodies[0]["logprobs"] is True
    assert all("logprobs" not in b for b in bodies[1:])  # remembered for the backend's life
    assert bodies[1] == {k: v for k, v in bodies[0].items() if k != "logprobs"}  # the same request otherwise
    [notice] = said  # said once
    assert "does not support the parameter 'logprobs'" in notice and "sending requests without it" in notice
    assert "deepseek-reasoner does not support" in notice  # with what the server said


def test_openais_unsupported_parameter_shape_names_it_in_param(server, make_backend, caplog):
    server.refuses = {"temperature": error_object(
        "Unsupported parameter: 'temperature' is not supported with this model.", param="temperature",
        code="unsupported_parameter")}
    backend = make_backend(server.url)  # no notice callback: the warning goes to logging
    [[completion]] = backend.generate([[{"role": "user", "content": "hi"}]], SamplingParams())

    assert completion.text == "answer 0 to hi"
    assert ["temperature" in r["body"] for r in server.posts()] == [True, False]
    [warning] = [r.getMessage() for r in caplog.records if "does not support the parameter" in r.getMessage()]
    assert "'temperature'" in warning


def test_several_refused_parameters_are_dropped_one_by_one(server, make_backend):
    server.refuses = {"logprobs": DEEPSEEK_LOGPROBS,
                      "top_logprobs": error_object("top_logprobs is not supported for this model")}
    backend = make_backend(server.url, extra_params={"logprobs": True, "top_logprobs": 2})
    [[completion]] = backend.generate([[{"role": "user", "content": "hi"}]], SamplingParams())

    assert completion.text == "answer 0 to hi"
    assert [sorted(set(r["body"]) & {"logprobs", "top_logprobs"}) for r in server.posts()] == [
        ["logprobs", "top_logprobs"], ["top_logprobs"], []]


@pytest.mark.parametrize("error", [
    pytest.param(error_object("Unsupported parameter: 'max_tokens' is not supported with this model. "
                              "Use 'max_completion_tokens' instead.", param="max_tokens",
                              code="unsupported_parameter"), id="max_tokens: the cap is never dropped"),
    pytest.param(error_object("-1 is less than the minimum of 0 - 'temperature'", param="temperature",
                              code="invalid_value"), id="a value out of range is not unsupported"),
    pytest.param(error_object("logprobs is not supported"), id="a parameter we did not send"),
])
def test_other_400s_stay_refused(server, make_backend, error):
    server.script = [(400, {"error": error}, {})]
    backend = make_backend(server.url)
    with pytest.raises(BackendRefused, match="HTTP 400"):
        backend.generate(["x"], SamplingParams())
    assert len(server.posts()) == 1


def test_omit_params_leaves_them_out_from_the_start(server, make_backend):
    backend = make_backend(server.url, omit_params=["temperature", "top_p", "seed"])
    backend.generate(["x"], SamplingParams(seed=3))
    [request] = server.posts()
    assert not {"temperature", "top_p", "seed"} & set(request["body"]) and request["body"]["max_tokens"] == 256
    with pytest.raises(ValueError, match="cannot leave out messages, model"):
        OpenAIBackend(server.url, MODEL, omit_params=["model", "messages"])


@pytest.mark.parametrize("body, expected", [
    ({"error": error_object("`top_logprobs` is not supported", code="invalid_request_error")}, "top_logprobs"),
    ({"error": error_object("Unrecognized request argument supplied: logprobs")}, "logprobs"),
    ({"error": error_object("bad", param="stream_options.include_usage", code="unsupported_parameter")},
     "stream_options"),
    ({"object": "error", "message": "seed is not supported by this backend", "param": None}, "seed"),  # old vLLM
    ({"error": error_object("temperature must be at most 2", param="temperature")}, None),
    ({"error": error_object("'topp' is unsupported")}, None),
    ("not json", None),
])
def test_unsupported_param_reads_the_error(body, expected):
    import json

    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    assert unsupported_param(raw, {"logprobs", "top_logprobs", "stream_options", "seed", "temperature"}) == expected


# Streaming: the chunks add up to what the non-streamed request returns


def test_a_streamed_deepseek_answer_equals_the_whole_one(server, make_backend):
    reasoning = "Natalia sold 48 in April and half as many in May: 48 + 24 = 72."
    answer = deepseek_answer(reasoning, "She sold \\boxed{72} clips altogether.", 17)
    server.script = [(200, answer, {}), ("stream", sse_events(stream_chunks(answer)))]  # whole, then streamed
    prompt = [{"role": "user", "content": "How many?"}]
    whole = make_backend(server.url).generate([prompt], SamplingParams())
    streamed = make_backend(server.url, stream=True).generate([prompt], SamplingParams())

    assert streamed == whole
    [[completion]] = streamed
    assert (completion.reasoning, completion.finish_reason) == (reasoning, "stop")
    assert (completion.prompt_tokens, completion.completion_tokens, completion.reasoning_tokens) == (21, 26, 17)
    request = server.posts()[1]
    assert request["body"]["stream"] is True and request["body"]["stream_options"] == {"include_usage": True}
    assert request["headers"]["Accept"] == "text/event-stream"


def test_streamed_choices_keep_their_own_text_and_finish_reason(server, make_backend):
    server.finish_reasons = ["stop", "length", "content_filter"]
    server.reasoning = "Thinking it over."  # vLLM's newer name for it: reasoning (the fake sends reasoning_content)
    prompt = [{"role": "user", "content": "hi"}]
    whole = make_backend(server.url).generate([prompt], SamplingParams(n=3))
    streamed = make_backend(server.url, stream=True).generate([prompt], SamplingParams(n=3))

    assert streamed == whole
    assert [c.finish_reason for c in streamed[0]] == ["stop", "length", "error"]
    assert [c.text.endswith(f"answer {i} to hi") for i, c in enumerate(streamed[0])] == [True] * 3


def test_a_streamed_raw_completion_equals_the_whole_one(server, make_backend):
    whole = make_backend(server.url).generate(["two words"], SamplingParams(n=2))
    streamed = make_backend(server.url, stream=True).generate(["two words"], SamplingParams(n=2))
    assert streamed == whole and whole[0][1].text == "two words -> sample 1 more"


def test_vllms_reasoning_delta_is_kept(server, make_backend):
    from openai.types.chat import ChatCompletionChunk
    from openai.types.chat.chat_completion_chunk import Choice, ChoiceDelta

    def chunk(finish_reason=None, **delta):
        return ChatCompletionChunk(id="c", created=1, model=MODEL, object="chat.completion.chunk", choices=[
            Choice(index=0, delta=ChoiceDelta(**delta), finish_reason=finish_reason)]).model_dump(exclude_none=True)

    server.script = [("stream", sse_events([chunk(reasoning="Hm, "), chunk(reasoning="4."),
                                            chunk(content="4", finish_reason="stop")]))]
    [[completion]] = make_backend(server.url, stream=True).generate([[{"role": "user", "content": "2+2?"}]],
                                                                   SamplingParams())
    assert (completion.reasoning, completion.text) == ("Hm, 4.", join_reasoning("Hm, 4.", "4"))
    assert completion.completion_tokens is None  # this server sent no usage


@pytest.mark.parametrize("action", [
    pytest.param("cut", id="connection closed mid-stream"),
    pytest.param("stream", id="stream ended without [DONE]"),
])
def test_a_cut_off_stream_is_retried_never_stored_short(server, make_backend, caplog, action):
    chunks = stream_chunks(deepseek_answer("Some reasoning that goes on.", "The answer.", 5))
    server.script = [(action, sse_events(chunks[:4], done=False))]
    backend = make_backend(server.url, stream=True)
    [[completion]] = backend.generate([[{"role": "user", "content": "q"}]], SamplingParams())

    assert completion.text == "answer 0 to q"  # the second, whole answer
    assert len(server.posts()) == 2
    [retry] = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert "cut off" in retry


def test_a_stream_cut_off_every_time_is_a_retryable_error(server, make_backend):
    chunks = stream_chunks(deepseek_answer("Some reasoning.", "The answer.", 5))
    server.script = [("cut", sse_events(chunks[:3], done=False))] * 3
    backend = make_backend(server.url, stream=True, max_retries=2)
    with pytest.raises(BackendError, match="failed after 3 attempts: the answer was cut off") as failure:
        backend.generate([[{"role": "user", "content": "q"}]], SamplingParams())
    assert failure.value.retryable  # the job's batch retry may try it again


def test_a_server_that_refuses_stream_options_streams_without_usage(server, make_backend):
    server.refuses = {"stream_options": error_object("stream_options is not supported", param="stream_options")}
    backend = make_backend(server.url, stream=True)
    said = []
    backend.notice = said.append
    [[completion]] = backend.generate([[{"role": "user", "content": "hi"}]], SamplingParams())

    assert completion.text == "answer 0 to hi" and completion.completion_tokens is None  # no usage chunk
    assert [("stream_options" in r["body"], r["body"]["stream"]) for r in server.posts()] == [(True, True),
                                                                                              (False, True)]
    assert len(said) == 1 and "'stream_options'" in said[0]


# The launch form's probe: does the server have /completions (raw-text templates)?


def test_the_probe_tells_a_chat_only_server(server):
    assert has_completions_endpoint(server.url) is True
    server.no_completions = 404  # DeepSeek's API
    assert has_completions_endpoint(server.url) is False
    server.no_completions = 405
    assert has_completions_endpoint(server.url + "/", api_key="sk-x") is False
    assert [p["path"] for p in server.probes()] == ["/v1/completions"] * 3 and server.posts() == []
    assert server.probes()[-1]["headers"]["Authorization"] == "Bearer sk-x"


def test_the_probe_does_not_know_when_the_server_does_not_answer():
    assert has_completions_endpoint(f"http://127.0.0.1:{closed_port()}/v1") is None
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        start = time.monotonic()
        assert has_completions_endpoint(f"http://127.0.0.1:{silent.getsockname()[1]}/v1", timeout_s=0.3) is None
        assert time.monotonic() - start < 2
    assert has_completions_endpoint("not a url") is None
