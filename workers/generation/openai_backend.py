"""Generation through an OpenAI-compatible HTTP server: vLLM, SGLang or a hosted API.

A string prompt goes to `POST {base_url}/completions`, a list of chat messages to
`POST {base_url}/chat/completions` (the server applies the chat template).

Decisions worth knowing:

- finish_reason: "stop" (and null, "eos", "tool_calls", "function_call") -> "stop";
  "length" -> "length"; anything else ("content_filter", vLLM's "abort", DeepSeek's
  "insufficient_system_resource") -> "error". Completion and the Rollout table know only
  those three, and such an output was neither finished by the model nor cut at the token
  cap, so it must not be scored as a complete answer.
- Token counts: `usage` covers the whole response. prompt_tokens of every completion is
  usage.prompt_tokens. With one choice completion_tokens is exact; with several, the
  servers give no per-choice count in a non-streamed response, so usage.completion_tokens
  is split in proportion to each choice's length in characters (reasoning included),
  rounded so the parts add up to the total: an estimate. None when the server sends no usage.
- n: asked for in one request. A server that ignores or caps n (some chat APIs do) gets
  further requests for the ones missing until n are collected; with a seed, request k
  (k = 0, 1, ...) is sent seed + k, so the extra requests do not repeat the first one.
- Reasoning: `message.reasoning_content` (DeepSeek, older vLLM) or `message.reasoning`
  (newer vLLM) is kept in Completion.reasoning and put first in Completion.text.
- Errors: 429, 408, 5xx, timeouts and dropped connections are retried max_retries times
  with exponential backoff and jitter, waiting at least Retry-After (capped at a minute);
  then BackendError names the status, the server's message and the attempt count.
  `retry_statuses` and `retry_timeouts` narrow that (a judge retries 429 and 5xx only: a
  timed-out verdict is reported, not waited for again).
  401/403 (the key), 404 (the model or the endpoint) and, before the server has ever
  answered, connection refused or an unknown host raise BackendUnavailable at once.
  Any other 4xx (a prompt over the context length: 400) raises BackendError without
  retrying: sending it again would not help. A 200 whose body is not JSON or has no
  choices raises BackendError with an excerpt.
- Parameters a server refuses: a 400 (or 422) whose error says that one of the optional
  parameters we sent (OPTIONAL_PARAMS, or one of extra_params) is not supported (its `param`,
  or its name in the message beside "not supported", "unsupported", ...) drops that parameter:
  said once (the `notice` callback, a job's log, else logging), the request sent again without
  it, and it is left out of every later request of this backend. DeepSeek's reasoner refuses
  logprobs so; OpenAI's o-series refuses temperature. A 400 about anything else (a prompt over
  the context, max_tokens, stop) is BackendRefused as before. `omit_params` leaves parameters
  out from the start.
- stream=True asks for server-sent events (with stream_options.include_usage) and adds the
  chunks up to the response a non-streamed request would have given: content and
  reasoning_content (or reasoning) deltas joined per choice, the last finish_reason, the usage
  of the final chunk. A stream that ends before `data: [DONE]` was cut off: retried like a
  dropped connection, never stored as a shorter completion.
- Token traces (SamplingParams.logprobs = k): chat requests ask `logprobs: true, top_logprobs: k`,
  completion requests `logprobs: k`; each choice's per-token log-probabilities (streamed or not) become
  a workers.tokens.TokenTrace. The servers name tokens by text, not id: the trace's ids index the
  distinct tokens of the completion (vocab_ids False), spelled by the `bytes` a chat answer gives
  (else the token's UTF-8). The entropy is estimated from the top-k log-probabilities (and the chosen
  token's), renormalised to sum to one: a lower bound, exact only when those hold all the mass; none
  with k = 0. The log-probabilities are the server's: vLLM's default is the raw model distribution,
  before temperature and top-p. A server that refuses logprobs (DeepSeek's reasoner) has the
  parameter dropped as any other refused one; its completions carry no trace.
- timeout_s bounds connecting and each wait for data, not a whole response.
- count_tokens() is None: the server owns the tokenizer and, for chat, the template, so
  the count is only known from usage after sending. A hosted API has no tokenize endpoint.
- The API key goes only into the Authorization header; it is redacted from any message
  a server echoes back, and is never logged.

Only the standard library: http.client connections kept alive in a small pool, threads
for concurrency (the requests spend their time waiting on the server).
"""

import email.utils
import http.client
import json
import logging
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import numpy as np

from workers.generation.base import (
    BackendError,
    BackendRefused,
    BackendUnavailable,
    Completion,
    Prompt,
    SamplingParams,
    join_reasoning,
)
from workers.tokens import MAX_TOP_K, TokenTrace, entropy_from_top

log = logging.getLogger(__name__)

RETRY_STATUSES = {408, 409, 429}  # and every 5xx; any other 4xx is refused, never retried
MAX_RETRY_AFTER_S = 60.0
EXCERPT_CHARS = 200
_UNREACHABLE = (ConnectionRefusedError, socket.gaierror, ssl.SSLCertVerificationError)
_STOP_REASONS = {None, "stop", "eos", "tool_calls", "function_call"}
# What may be left out when a server refuses it: the server then samples with its own default (n: the
# top-up loop asks again). Never max_tokens (the cap) nor stop (the completions would run past it).
OPTIONAL_PARAMS = {"temperature", "top_p", "seed", "n", "stream_options", "logprobs", "top_logprobs",
                   "presence_penalty", "frequency_penalty"}
_REQUIRED_PARAMS = {"model", "prompt", "messages", "stream"}
_UNSUPPORTED = re.compile(r"unsupported|not support|not allowed|not permitted|unrecogni[sz]ed|"
                          r"unknown (?:parameter|argument|field)", re.IGNORECASE)
PROBE_TIMEOUT_S = 5.0


class OpenAIBackend:
    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, max_concurrency: int = 8,
                 timeout_s: float = 120, max_retries: int = 4, backoff_s: float = 1.0,
                 context_length: int | None = None, stream: bool = False, omit_params: Iterable[str] = (),
                 extra_params: dict | None = None, retry_statuses: Iterable[int] = RETRY_STATUSES,
                 retry_timeouts: bool = True):
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        omit_params = [omit_params] if isinstance(omit_params, str) else list(omit_params)
        if kept := _REQUIRED_PARAMS.intersection(omit_params):
            raise ValueError(f"omit_params cannot leave out {', '.join(sorted(kept))}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.retry_statuses = set(retry_statuses)  # and every 5xx
        self.retry_timeouts = retry_timeouts
        self._api_key = api_key or None
        self._headers = {"Content-Type": "application/json", "Accept": "application/json",
                         "User-Agent": "r1studio"}
        if self._api_key:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        self._pool = _ConnectionPool(self.base_url, timeout_s)
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="openai-backend")
        self._reached = False  # set once the server has answered anything
        self._context_length = context_length
        self._context_length_known = context_length is not None
        self._context_lock = threading.Lock()
        self.stream = stream
        self.extra_params = dict(extra_params or {})  # sent with every request, e.g. vLLM's top_k
        self._omitted = set(omit_params)  # grows when the server refuses a parameter
        self._omitted_lock = threading.Lock()
        self.notice: Callable[[str], None] | None = None  # where to say what was changed (a job's log)

    # The Backend protocol

    def generate(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Completion]]:
        if params.n < 1:
            raise ValueError("params.n must be at least 1")
        cancel = threading.Event()  # set when one prompt fails: the others stop retrying
        futures = [self._executor.submit(self._complete, prompt, params, cancel) for prompt in prompts]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f in done and f.exception() is not None]
        if failed:
            cancel.set()
            for f in pending:
                f.cancel()
            raise failed[0].exception()
        return [f.result() for f in futures]

    def render(self, prompt: Prompt) -> str:
        """The prompt as sent: the server applies its own chat template to messages."""
        return prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)

    def context_length(self) -> int | None:
        with self._context_lock:
            if not self._context_length_known:
                self._context_length = self._fetch_context_length()
                self._context_length_known = True  # asked once, whatever the answer
            return self._context_length

    def count_tokens(self, prompt: Prompt) -> int | None:
        return None  # see the module docstring

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._pool.close()

    # One prompt: requests until n completions are collected

    def _complete(self, prompt: Prompt, params: SamplingParams, cancel: threading.Event) -> list[Completion]:
        chat = not isinstance(prompt, str)
        path = "/chat/completions" if chat else "/completions"
        completions: list[Completion] = []
        request_no = 0
        while len(completions) < params.n:
            if cancel.is_set():
                raise BackendError("given up: another prompt of the batch failed")
            missing = params.n - len(completions)
            body = {**self.extra_params, "model": self.model, "n": missing, "temperature": params.temperature,
                    "top_p": params.top_p, "max_tokens": params.max_tokens}
            body["messages" if chat else "prompt"] = prompt
            if params.seed is not None:
                body["seed"] = params.seed + request_no
            if params.stop:
                body["stop"] = list(params.stop)
            if params.logprobs is not None:
                top_k = max(0, min(params.logprobs, MAX_TOP_K))
                body |= {"logprobs": True, "top_logprobs": top_k} if chat else {"logprobs": top_k}
            if self.stream:
                body |= {"stream": True, "stream_options": {"include_usage": True}}
            data = self._post(path, body, cancel)
            completions.extend(self._parse(data, chat, path)[:missing])  # _parse returns at least one
            request_no += 1
        return completions

    def _parse(self, data, chat: bool, path: str) -> list[Completion]:
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices:
            raise BackendError(f"malformed response from {self.base_url}{path}: "
                               f"no choices in {self._redact(_excerpt(data))}")
        texts, reasonings, reasons, traces = [], [], [], []
        for choice in choices:
            try:
                if chat:
                    message = choice["message"]
                    content = message.get("content") or ""
                    reasoning = message.get("reasoning_content") or message.get("reasoning") or None
                else:
                    content, reasoning = choice["text"], None
                if not isinstance(content, str) or not isinstance(reasoning, str | None):
                    raise TypeError
                reason = choice.get("finish_reason")
            except (KeyError, TypeError, AttributeError):
                raise BackendError(f"malformed response from {self.base_url}{path}: "
                                   f"unexpected choice {self._redact(_excerpt(choice))}") from None
            texts.append(join_reasoning(reasoning, content))
            reasonings.append(reasoning)
            reasons.append(_finish_reason(reason))
            traces.append(token_trace(choice.get("logprobs"), chat))
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        prompt_tokens = _int_or_none(usage.get("prompt_tokens"))
        completion_tokens = split_tokens(_int_or_none(usage.get("completion_tokens")),
                                         [len(t) for t in texts])
        details = usage.get("completion_tokens_details")
        reasoning_total = _int_or_none(details.get("reasoning_tokens")) if isinstance(details, dict) else None
        reasoning_tokens = split_tokens(reasoning_total, [len(r or "") for r in reasonings])
        return [Completion(*fields) for fields in zip(texts, [prompt_tokens] * len(texts), completion_tokens, reasons,
                                                      reasonings, reasoning_tokens, traces, strict=True)]

    # HTTP, with retries

    def _post(self, path: str, body: dict, cancel: threading.Event) -> dict:
        """POST `body` without the parameters this server refuses; one it refuses now is dropped and the
        request sent again (each time one parameter fewer, so this ends)."""
        while True:
            with self._omitted_lock:
                sent = {key: value for key, value in body.items() if key not in self._omitted}
            try:
                return self._post_with_retries(path, sent, cancel)
            except _Unsupported as refused:
                self._omit(refused.param, refused.message)

    def _post_with_retries(self, path: str, body: dict, cancel: threading.Event) -> dict:
        url = self.base_url + path
        payload = json.dumps(body).encode()
        attempts = self.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._post_once(path, body, payload)
            except _Retry as retry:
                problem, retry_after = retry.problem, retry.after
            if attempt == attempts:
                raise BackendError(f"{url} failed after {attempts} attempts: {problem}")
            delay = self.backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
            if retry_after is not None:
                delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
            log.warning("%s: %s; attempt %d of %d, retrying in %.2fs", url, problem, attempt, attempts, delay)
            if cancel.wait(delay):
                raise BackendError(f"{url}: given up, another prompt of the batch failed (last: {problem})")
        raise AssertionError("unreachable")

    def _post_once(self, path: str, body: dict, payload: bytes) -> dict:
        """One POST: the answer, or _Retry saying why another attempt may succeed; what will not, raises."""
        url = self.base_url + path
        wanted = {"Accept": "text/event-stream"} if body.get("stream") else {}
        try:
            status, headers, raw = self._pool.request("POST", path, payload, self._headers | wanted)
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, _UNREACHABLE) and not self._reached:
                raise BackendUnavailable(f"cannot reach {self.base_url}: {self._describe(exc)}") from exc
            if isinstance(exc, TimeoutError) and not self.retry_timeouts:
                raise BackendError(f"{url}: {self._describe(exc)}") from None
            raise _Retry(self._describe(exc)) from None
        self._reached = True
        if status == 200:
            return self._decode(url, headers, raw, chat="messages" in body)
        message = self._redact(_error_message(raw))
        if status in (401, 403):
            given = "refused the API key" if self._api_key else "wants an API key (none was given)"
            raise BackendUnavailable(f"the server {given} ({status}): {message}")
        if status == 404 and path == "/completions":  # a chat-only API (DeepSeek's) has no such endpoint
            raise BackendUnavailable(f"404 from {url}: no model {self.model!r} there, or no completions endpoint "
                                     f"(a chat-only server needs the chat template): {message}")
        if status == 404:
            raise BackendUnavailable(f"model {self.model!r} not found (404 from {url}): {message}")
        if status in (400, 422) and (param := unsupported_param(raw, self._optional(body))):
            raise _Unsupported(param, f"HTTP {status}: {message}")
        if status < 500 and status not in self.retry_statuses:
            raise BackendRefused(f"{url} answered HTTP {status}: {message}")
        raise _Retry(f"HTTP {status}: {message}", retry_after_seconds(headers.get("Retry-After")))

    def _decode(self, url: str, headers, raw: bytes, chat: bool) -> dict:
        """A 200's body as a response dict: JSON, or server-sent events added up (a server may not stream)."""
        if headers.get("Content-Type", "").startswith("text/event-stream"):
            try:
                return assemble_stream(raw, chat)
            except StreamCutOff as cut:
                raise _Retry(str(cut)) from None
            except (ValueError, TypeError, AttributeError) as exc:
                raise BackendError(f"malformed stream from {url}: {self._redact(str(exc))}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise BackendError(f"malformed response from {url}: not JSON: "
                               f"{self._redact(_excerpt(raw))}") from None

    def _optional(self, body: dict) -> set[str]:
        """The parameters of `body` that may be dropped if the server refuses them."""
        return {key for key in body if key in OPTIONAL_PARAMS or key in self.extra_params}

    def _omit(self, param: str, why: str) -> None:
        with self._omitted_lock:
            first = param not in self._omitted
            self._omitted.add(param)
        if first:  # requests in flight may all be refused the same way: say it once
            message = (f"{self.base_url} does not support the parameter {param!r} ({why}); "
                       f"sending requests without it")
            (self.notice or log.warning)(message)

    def _fetch_context_length(self) -> int | None:
        try:
            status, _, raw = self._pool.request("GET", "/models", None, self._headers)
            models = json.loads(raw).get("data", []) if status == 200 else []
        except (OSError, http.client.HTTPException, ValueError, AttributeError):
            return None
        models = [m for m in models if isinstance(m, dict)]
        ours = [m for m in models if m.get("id") == self.model] or models[:1]
        return _int_or_none(ours[0].get("max_model_len")) if ours else None

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, ConnectionRefusedError):
            return "connection refused"
        if isinstance(exc, socket.gaierror):
            return f"unknown host {self._pool.host!r}"
        if isinstance(exc, TimeoutError):
            return f"no answer within {self.timeout_s}s"
        if isinstance(exc, http.client.RemoteDisconnected):
            return "the server closed the connection without answering"
        if isinstance(exc, http.client.IncompleteRead):
            return f"the answer was cut off after {len(exc.partial)} bytes"
        return self._redact(f"{type(exc).__name__}: {exc}")

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


class _Retry(Exception):
    """An attempt failed in a way another attempt may not (a 5xx, a timeout, a cut-off stream)."""

    def __init__(self, problem: str, after: float | None = None):
        super().__init__(problem)
        self.problem, self.after = problem, after


class _Unsupported(Exception):
    """The server refused one of the optional parameters sent."""

    def __init__(self, param: str, message: str):
        super().__init__(param)
        self.param, self.message = param, message


class StreamCutOff(Exception):
    """A stream of server-sent events ended before `data: [DONE]`."""


class _ConnectionPool:
    """Kept-alive connections to one server, each used by one thread at a time."""

    def __init__(self, base_url: str, timeout_s: float):
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port]/path, not {base_url!r}")
        self.host, self.port, self.https = url.hostname, url.port, url.scheme == "https"
        self.prefix = url.path.rstrip("/")
        self.timeout_s = timeout_s
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def request(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, object, bytes]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        reused = conn is not None
        conn = conn or self._connect()
        try:
            conn.request(method, self.prefix + path, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            conn.close()
            if reused:  # the server had closed the kept-alive connection: once more on a fresh one
                return self.request(method, path, body, headers)
            raise
        except BaseException:
            conn.close()
            raise
        with self._lock:
            if response.will_close or self._closed:
                conn.close()
            else:
                self._idle.append(conn)
        return response.status, response.headers, raw

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout_s,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def split_tokens(total: int | None, lengths: list[int]) -> list[int | None]:
    """`total` shared in proportion to `lengths` (largest remainder: the parts add up to it)."""
    if total is None:
        return [None] * len(lengths)
    weights = [length + 1 for length in lengths]  # an empty completion still took a token (its end)
    exact = [total * w / sum(weights) for w in weights]
    parts = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts


def unsupported_param(raw: bytes, candidates: set[str]) -> str | None:
    """Which of `candidates` an error body says the server does not support, or None.

    OpenAI's and DeepSeek's shape: {"error": {"message", "type", "param", "code"}} (vLLM's older one
    has them at the top). The error must say "unsupported" or the like (in its message or code): a
    value out of range names its parameter too, and dropping that one would sample differently.
    Then `param`, if given, names it; else the first candidate that the message names.
    """
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    error = error if isinstance(error, dict) else data if isinstance(data, dict) else {}
    message = str(error.get("message") or "")
    if not _UNSUPPORTED.search(f"{message} {error.get('code') or ''}"):
        return None
    param = error.get("param")
    if isinstance(param, str) and param:
        name = re.split(r"[.\[]", param, maxsplit=1)[0]  # "stream_options.include_usage" -> stream_options
        return name if name in candidates else None
    named = [(found.start(), name) for name in candidates
             if (found := re.search(rf"\b{re.escape(name)}\b", message))]
    return min(named)[1] if named else None


def sse_data(raw: bytes) -> Iterator[str]:
    """The data of each server-sent event (its data lines joined); comments such as `: keep-alive` skipped."""
    for event in re.split(r"\r?\n\r?\n", raw.decode("utf-8", "replace")):
        lines = [line[len("data:"):].removeprefix(" ") for line in event.splitlines() if line.startswith("data:")]
        if lines:
            yield "\n".join(lines)


def assemble_stream(raw: bytes, chat: bool) -> dict:
    """A streamed response as the non-streamed one it adds up to: each choice's text (and reasoning) joined
    from its deltas, its last finish_reason, and the usage of the final chunk (include_usage)."""
    events = list(sse_data(raw))
    if not events or events[-1].strip() != "[DONE]":
        raise StreamCutOff(f"the stream was cut off after {len(events)} events (no [DONE])")
    parts: dict[int, dict] = {}
    usage = None
    for event in events[:-1]:
        chunk = json.loads(event)
        if chunk.get("error"):  # vLLM reports a failure inside the stream
            raise StreamCutOff(f"the server failed mid-stream: {_excerpt(chunk['error'])}")
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or []:
            part = parts.setdefault(choice.get("index", 0), {"text": [], "reasoning": [], "finish_reason": None,
                                                             "logprobs": None})
            delta = (choice.get("delta") or {}) if chat else {"content": choice.get("text")}
            part["text"].append(delta.get("content") or "")
            part["reasoning"].append(delta.get("reasoning_content") or delta.get("reasoning") or "")
            part["finish_reason"] = choice.get("finish_reason") or part["finish_reason"]
            if isinstance(choice.get("logprobs"), dict):  # each chunk's tokens, added to the choice's
                part["logprobs"] = _join_logprobs(part["logprobs"], choice["logprobs"], chat)
    choices = []
    for index, part in sorted(parts.items()):
        text, reasoning = "".join(part["text"]), "".join(part["reasoning"]) or None
        said = {"message": {"role": "assistant", "content": text, "reasoning_content": reasoning}} if chat \
            else {"text": text}
        choices.append({"index": index, **said, "finish_reason": part["finish_reason"], "logprobs": part["logprobs"]})
    return {"choices": choices, "usage": usage}


def _join_logprobs(sofar: dict | None, more: dict, chat: bool) -> dict:
    """A streamed choice's logprobs so far with one more chunk's: chat `content` lists, or the completion
    endpoint's parallel lists, concatenated."""
    keys = ("content",) if chat else ("tokens", "token_logprobs", "top_logprobs")
    sofar = sofar or {key: [] for key in keys}
    return {key: sofar[key] + list(more.get(key) or []) for key in keys}


def _token_bytes(entry: dict) -> bytes:
    raw = entry.get("bytes")
    if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
        return bytes(raw)
    return str(entry.get("token", "")).encode("utf-8")


def _number(value) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else float("nan")


def token_trace(logprobs, chat: bool) -> TokenTrace | None:
    """A choice's `logprobs` as a TokenTrace (see the module docstring), or None when it has none."""
    if not isinstance(logprobs, dict):
        return None
    if chat:
        entries = [e for e in logprobs.get("content") or [] if isinstance(e, dict)]
        chosen = [(_token_bytes(e), _number(e.get("logprob"))) for e in entries]
        tops = [[(_token_bytes(t), _number(t.get("logprob"))) for t in e.get("top_logprobs") or []
                 if isinstance(t, dict)] for e in entries]
    else:
        tokens, values = logprobs.get("tokens") or [], logprobs.get("token_logprobs") or []
        top_maps = logprobs.get("top_logprobs") or [None] * len(tokens)
        if len(values) != len(tokens) or len(top_maps) != len(tokens):
            return None
        chosen = [(str(t).encode("utf-8"), _number(v)) for t, v in zip(tokens, values)]
        tops = [[(str(t).encode("utf-8"), _number(v)) for t, v in m.items()] if isinstance(m, dict) else []
                for m in top_maps]
    if not chosen:
        return None
    local: dict[bytes, int] = {}  # the distinct tokens, numbered by first appearance

    def local_id(piece: bytes) -> int:
        return local.setdefault(piece, len(local))

    ids = [local_id(piece) for piece, _ in chosen]
    k = min(MAX_TOP_K, max((len(t) for t in tops), default=0))
    top_ids = np.full((len(chosen), k), -1, dtype=np.int32)
    top_logprobs = np.full((len(chosen), k), -np.inf, dtype=np.float32)
    for row, alternatives in enumerate(tops):
        for col, (piece, value) in enumerate(sorted(alternatives, key=lambda a: -a[1])[:k]):
            top_ids[row, col], top_logprobs[row, col] = local_id(piece), value
    entropy = None
    if k:
        # The chosen token counts too, where it is not among the top k the server listed.
        with_chosen = np.concatenate([top_logprobs, np.full((len(chosen), 1), -np.inf, np.float32)], axis=1)
        for row, (i, (_, value)) in enumerate(zip(ids, chosen)):
            if i not in top_ids[row]:
                with_chosen[row, -1] = value
        entropy = entropy_from_top(with_chosen)
    return TokenTrace(ids=ids, logprobs=[value for _, value in chosen], entropy=entropy,
                      top_ids=top_ids if k else None, top_logprobs=top_logprobs if k else None,
                      pieces={i: piece for piece, i in local.items()}, vocab_ids=False,
                      entropy_kind="top_k" if k else "")


def has_completions_endpoint(base_url: str, api_key: str | None = None,
                             timeout_s: float = PROBE_TIMEOUT_S) -> bool | None:
    """Whether the server has `POST {base_url}/completions` (raw-text prompts), asked without spending tokens.

    An empty body: a server with the endpoint refuses it for the missing fields (400, 422); one
    without (DeepSeek's API: chat only) answers 404 or 405. None when it cannot be told (no answer
    within timeout_s, a refused key, a 5xx): the job will say what is wrong.
    """
    headers = {"Content-Type": "application/json", "User-Agent": "r1studio"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        pool = _ConnectionPool(base_url.rstrip("/"), timeout_s)
    except ValueError:
        return None
    try:
        status, _, _ = pool.request("POST", "/completions", b"{}", headers)
    except (OSError, http.client.HTTPException):
        return None
    finally:
        pool.close()
    if status in (404, 405):
        return False
    return None if status in (401, 403) or status >= 500 else True


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header: seconds (decimals accepted) or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _finish_reason(reason) -> str:
    if reason in _STOP_REASONS:
        return "stop"
    return "length" if reason == "length" else "error"


def _error_message(raw: bytes) -> str:
    """The message of an error body: OpenAI's {"error": {"message"}}, vLLM/SGLang's {"message"}, or an excerpt."""
    if not raw.strip():
        return "(empty body)"
    try:
        data = json.loads(raw)
    except ValueError:
        return _excerpt(raw)
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:EXCERPT_CHARS * 2]
        for key in ("message", "detail"):
            if data.get(key):
                return str(data[key])[:EXCERPT_CHARS * 2]
        if isinstance(error, str):
            return error[:EXCERPT_CHARS * 2]
    return _excerpt(raw)


def _excerpt(value) -> str:
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value)
    text = " ".join(text.split())
    return repr(text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else ""))


def _int_or_none(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
