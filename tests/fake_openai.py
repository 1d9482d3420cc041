"""A small OpenAI-compatible server (stdlib ThreadingHTTPServer, port 0) for tests.

Each test sets its behaviour: a script of answers for the next requests (an error
status, a hang, a malformed body), then normal completions. It records every request
and the most requests it had in flight at once.
"""

import json
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
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.fake = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def posts(self) -> list[dict]:
        return [r for r in self.requests if r["method"] == "POST"]

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
            texts = [f"answer {i} to {question}" for i in range(n)]
            choices = []
            for i, (text, reason) in enumerate(zip(texts, reasons)):
                message = {"role": "assistant", "content": text}
                if self.reasoning:
                    message["reasoning_content"] = self.reasoning
                choices.append({"index": i, "message": message, "finish_reason": reason})
            prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        completion_tokens = sum(len(t.split()) for t in texts)
        return {"id": "x", "object": "text_completion", "model": body["model"], "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that gave up on a hanging answer: expected here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._handle(None)

    def do_POST(self):
        self._handle(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

    def _handle(self, body):
        fake: FakeServer = self.server.fake
        with fake.lock:
            fake.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                  "body": body, "client": self.client_address})
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
            action = fake.script.pop(0) if fake.script and body is not None else None
        try:
            status, payload, headers = 200, None, {}
            if action and action[0] == "hang":
                time.sleep(action[1])
            elif action:
                status, payload, headers = action
            elif fake.delay:
                time.sleep(fake.delay)
            if payload is None and status == 200:
                payload = fake.answer(self.path, body)
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


