"""A small OpenAI-compatible server (stdlib ThreadingHTTPServer, port 0) for tests.

Each test sets its behaviour: a script of answers for the next requests (an error
status, a hang, a malformed body, a stream of events, cut off or not), then normal
completions. A request with `"stream": true` gets its answer as server-sent events. It can
refuse parameters (as DeepSeek's reasoner refuses logprobs) and have no /completions
endpoint (a chat-only API). Asked for logprobs, it gives each answer's tokens (words, spaces and
punctuation, or `tokens` when a test sets them) with log-probabilities and top alternatives, built
with the openai package's own types (token_logprob(j) is the j-th token's). It records every request
and the most requests it had in flight at once; an empty POST body (the launch form's endpoint probe) is answered as a
real server would and not counted among posts().
"""

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "r1-test"


class FakeServer:
    def __init__(self):
        self.script = []  # answers for the next requests in arrival order: (status, body, headers) or ("hang", s)
        self.requests = []  # dicts: method, path, headers, body, client
        self.delay = 0.0  # seconds each normal answer takes
        self.max_choices = None  # a server that caps (or ignores) n
        self.reasoning = None  # chat answers carry this reasoning_content
        self.finish_reasons = ["stop"]
        self.models = [{"id": MODEL, "object": "model", "max_model_len": 4096}]
        self.drop_idle = False  # close each connection after answering, without saying so
        self.refuses = {}  # parameter -> the error object of the 400 a request carrying it gets
        self.no_completions = None  # a chat-only server: /v1/completions answers this status (404 or 405)
        self.tokens = None  # the tokens every answer is made of (else its text split into words and spaces)
        self.reply = None  # a function of a chat request's last message giving the answer (a judge's verdict)
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.fake = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def split(self, text: str) -> list[str]:
        """The tokens of an answer's text."""
        return list(self.tokens) if self.tokens is not None and text == "".join(self.tokens) else _split(text)

    def posts(self) -> list[dict]:
        """The completion requests (not the endpoint probes, whose body is empty)."""
        return [r for r in self.requests if r["method"] == "POST" and r["body"] != {}]

    def probes(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "POST" and r["body"] == {}]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, path: str, body: dict | None) -> dict:
        if path == "/v1/models":
            return {"object": "list", "data": self.models}
        n = body["n"] if self.max_choices is None else min(body["n"], self.max_choices)
        reasons = [self.finish_reasons[i % len(self.finish_reasons)] for i in range(n)]
        if path == "/v1/completions":
            texts = [f"{body['prompt']} -> sample {i}" + " more" * i for i in range(n)]
            choices = [{"index": i, "text": t, "finish_reason": r} for i, (t, r) in enumerate(zip(texts, reasons))]
            prompt_tokens = len(body["prompt"].split())
        else:
            question = body["messages"][-1]["content"]
            texts = [self.reply(question) if self.reply else f"answer {i} to {question}" for i in range(n)]
            choices = []
            for i, (text, reason) in enumerate(zip(texts, reasons)):
                message = {"role": "assistant", "content": text}
                if self.reasoning:
                    message["reasoning_content"] = self.reasoning
                choices.append({"index": i, "message": message, "finish_reason": reason})
            prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        if self.tokens is not None:
            texts = ["".join(self.tokens)] * n
            for choice, text in zip(choices, texts):
                said = {"text": text} if "text" in choice else {"message": {**choice["message"], "content": text}}
                choice.update(said)
        if body.get("logprobs") not in (None, False):
            k = body.get("top_logprobs", 0) if "messages" in body else body["logprobs"]
            for choice, text in zip(choices, texts):
                choice["logprobs"] = answer_logprobs(self.split(text), k, chat="messages" in body)
        completion_tokens = sum(len(t.split()) for t in texts)
        return {"id": "x", "object": "text_completion", "model": body["model"], "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}


TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def _split(text: str) -> list[str]:
    return TOKEN.findall(text)


def token_logprob(j: int) -> float:
    """The fake's log-probability of its j-th token of an answer."""
    return -0.05 - 0.37 * (j % 7)


def answer_logprobs(tokens: list[str], k: int, chat: bool) -> dict:
    """Logprobs of an answer made of `tokens`: token j has token_logprob(j); its k alternatives are itself and
    "alt1".."alt{k-1}" at ever lower log-probabilities."""
    from openai.types.chat.chat_completion import ChoiceLogprobs
    from openai.types.chat.chat_completion_token_logprob import ChatCompletionTokenLogprob, TopLogprob
    from openai.types.completion_choice import Logprobs

    def alternatives(j, token):
        return [(token, token_logprob(j))] + [(f"alt{a}", token_logprob(j) - 1.5 * a) for a in range(1, k)]

    if chat:
        content = [ChatCompletionTokenLogprob(
            token=token, bytes=list(token.encode()), logprob=token_logprob(j),
            top_logprobs=[TopLogprob(token=t, bytes=list(t.encode()), logprob=v)
                          for t, v in alternatives(j, token)[:k]])
            for j, token in enumerate(tokens)]
        return ChoiceLogprobs(content=content).model_dump(exclude_none=True)
    offsets = [sum(len(t) for t in tokens[:j]) for j in range(len(tokens))]
    return Logprobs(tokens=tokens, token_logprobs=[token_logprob(j) for j in range(len(tokens))],
                    top_logprobs=[dict(alternatives(j, t)[:k]) if k else None for j, t in enumerate(tokens)],
                    text_offset=offsets).model_dump()


def stream_chunks(response: dict, include_usage: bool = True, piece: int = 5) -> list[dict]:
    """What a server streams for `response`: per choice its text (and reasoning) in pieces of `piece`
    characters, then its finish_reason; then, with include_usage, one chunk with no choices and the usage.
    Chat chunks are built with the openai package's ChatCompletionChunk; completion chunks are vLLM's dicts."""
    from openai.types.chat import ChatCompletionChunk
    from openai.types.chat.chat_completion_chunk import Choice, ChoiceDelta
    from openai.types.chat.chat_completion_chunk import ChoiceLogprobs as ChunkLogprobs

    def pieces(text):
        return [text[i:i + piece] for i in range(0, len(text or ""), piece)]

    def chat_chunk(choices, usage=None):
        return ChatCompletionChunk(id=response["id"], created=1_700_000_000, model=response["model"],
                                   object="chat.completion.chunk", choices=choices,
                                   usage=usage).model_dump(exclude_none=True)

    def text_chunk(index, text, finish_reason=None):
        return {"id": response["id"], "object": "text_completion", "model": response["model"],
                "choices": [{"index": index, "text": text, "finish_reason": finish_reason}]}

    chunks = []
    for choice in response["choices"]:
        i, reason = choice["index"], choice.get("finish_reason")
        if "message" in choice:
            message = choice["message"]
            chunks.append(chat_chunk([Choice(index=i, delta=ChoiceDelta(role="assistant", content=""))]))
            chunks += [chat_chunk([Choice(index=i, delta=ChoiceDelta(reasoning_content=p))])
                       for p in pieces(message.get("reasoning_content"))]
            if choice.get("logprobs"):  # one token a chunk, each with its logprobs, as vLLM streams them
                chunks += [chat_chunk([Choice(index=i, delta=ChoiceDelta(content=entry["token"]),
                                              logprobs=ChunkLogprobs(content=[entry]))])
                           for entry in choice["logprobs"]["content"]]
            else:
                chunks += [chat_chunk([Choice(index=i, delta=ChoiceDelta(content=p))])
                           for p in pieces(message["content"])]
            chunks.append(chat_chunk([Choice(index=i, delta=ChoiceDelta(), finish_reason=reason)]))
        elif choice.get("logprobs"):
            logprobs = choice["logprobs"]
            for j, token in enumerate(logprobs["tokens"]):
                chunk = text_chunk(i, token)
                chunk["choices"][0]["logprobs"] = {"tokens": [token], "token_logprobs": [logprobs["token_logprobs"][j]],
                                                   "top_logprobs": [logprobs["top_logprobs"][j]]}
                chunks.append(chunk)
            chunks.append(text_chunk(i, "", reason))
        else:
            chunks += [text_chunk(i, p) for p in pieces(choice["text"])] + [text_chunk(i, "", reason)]
    if include_usage and response.get("usage"):
        chunks.append(chat_chunk([], response["usage"]) if "message" in response["choices"][0]
                      else {**text_chunk(0, ""), "choices": [], "usage": response["usage"]})
    return chunks


def sse_events(chunks: list, done: bool = True) -> list:
    """The events of a stream: DeepSeek's keep-alive comment, the chunks, and `[DONE]` unless told not to."""
    return [": keep-alive", *chunks, *(["[DONE]"] if done else [])]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the listen backlog (socketserver's is 5): 32 clients connecting at once lost SYNs

    def handle_error(self, request, client_address):
        pass  # a client that gave up on a hanging answer: expected here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    # TCP_NODELAY, as uvicorn and vLLM set it: else the body, written after the headers, waits on the
    # client's delayed ACK (40 ms a response on Linux).
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._handle(None)

    def do_POST(self):
        self._handle(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

    def _handle(self, body):
        fake: FakeServer = self.server.fake
        refusal = self._refusal(fake, body)
        with fake.lock:
            fake.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                  "body": body, "client": self.client_address})
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
            action = fake.script.pop(0) if fake.script and body and not refusal else None
        try:
            status, payload, headers = refusal or (200, None, {})
            if action and action[0] == "hang":
                time.sleep(action[1])
            elif action and action[0] in ("stream", "cut"):
                return self._stream(action[1], cut=action[0] == "cut")
            elif action:
                status, payload, headers = action
            elif fake.delay and not refusal:
                time.sleep(fake.delay)
            if payload is None and status == 200:
                payload = fake.answer(self.path, body)
                if body and body.get("stream"):
                    usage = (body.get("stream_options") or {}).get("include_usage", False)
                    return self._stream(sse_events(stream_chunks(payload, usage)))
            raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
            self.wfile.flush()
            if fake.drop_idle:
                self.close_connection = True
        finally:
            with fake.lock:
                fake.in_flight -= 1

    def _refusal(self, fake, body):
        """The error a real server gives this request before generating anything, or None."""
        if body is None:
            return None
        if fake.no_completions and self.path == "/v1/completions":
            return fake.no_completions, {"error": {"message": "Not Found", "type": "invalid_request_error"}}, {}
        if body == {}:  # the launch form's probe: a server with the endpoint wants its fields
            return 400, {"error": {"message": "model: field required; prompt: field required",
                                   "type": "invalid_request_error", "param": "prompt", "code": None}}, {}
        refused = [name for name in fake.refuses if name in body]
        return (400, {"error": fake.refuses[refused[0]]}, {}) if refused else None

    def _stream(self, events, cut=False):
        """Server-sent events in chunked encoding; `cut` closes the connection without the last chunk."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in events:
            text = event if isinstance(event, str) and event.startswith(":") else \
                f"data: {event if isinstance(event, str) else json.dumps(event)}"
            raw = f"{text}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
        if cut:
            self.close_connection = True
        else:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


