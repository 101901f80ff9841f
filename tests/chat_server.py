"""A chat-completions server on 127.0.0.1 that answers deterministically and misbehaves on cue.

    with ChatServer(plan={3: "429", 10: "500", 20: "hang"}, key=key) as server:
        ...  # point a client at server.url; server.requests counts chat requests

The answer is derived from the prompt and a hash of the image: one of the options listed in the
prompt ("Choose one of: a, b, c." or a ['a', 'b'] list), a JSON object for the AlDahoul JSON
prompt, a number for "How old...". `plan` maps a request number (1-based, in arrival order) to a
behaviour, or is a function (number, body) -> behaviour | None. Behaviours:
  ok, 429 (with Retry-After), 500, hang (no answer for `hang_seconds`, then hang up), malformed (a 200 whose
  JSON is cut off), empty (a 200 with no choices and no usage), content_filter, policy (400 naming the content
  policy), echo_key (400 that echoes the Authorization header back), refuse (a polite refusal
  text), 401, no_logprobs (ignore a request's `logprobs`). A request with `logprobs: true` gets
  `top_logprobs` of its first token (see `first_token_logprobs`).
Bounded: every wait ends at `close()`, and the server only listens on the loopback interface.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL_NAME = "served-test-model"
Plan = Callable[[int, dict[str, Any]], "str | None"]


def fake_key() -> str:
    """A recognisable fake API key, built at run time so no key-like string is committed."""
    return "sk-vlmfacetest-" + secrets.token_hex(8)


def _options(prompt: str) -> list[str]:
    """The answer options a prompt lists, or []."""
    if match := re.search(r"Choose one of: (.*?)\. Answer", prompt, re.S):
        return [o.strip() for o in re.split(r",\s*(?![^()]*\))", match.group(1)) if o.strip()]
    if match := re.search(r"\[([^\]]*)\]", prompt):
        return re.findall(r"'([^']*)'", match.group(1))
    return []


def answer_for(prompt: str, image_url: str) -> str:
    """The deterministic answer of the server to one prompt about one image."""
    h = int(hashlib.sha256(image_url.encode()).hexdigest()[:12], 16)
    if "JSON" in prompt and "Races:" in prompt:
        lists = [re.findall(r"'([^']*)'", block) for block in re.findall(r"\[([^\]]*)\]", prompt)]
        picks = [options[h % len(options)] if options else "" for options in lists[:3]]
        picks += [""] * (3 - len(picks))
        return "```json\n" + json.dumps({"race": picks[0], "gender": picks[1], "age-group": picks[2]}) + "\n```"
    options = _options(prompt)
    if options:
        return options[h % len(options)]
    if "old" in prompt or "number" in prompt:
        return f"{18 + h % 60} years old"
    return "I do not know."


def first_token_logprobs(prompt: str, image_url: str, top: int) -> list[tuple[str, float]]:
    """What the server returns as top_logprobs of its first answer token: the first word of
    every listed option (a one-word option is one token), plus filler tokens, with
    log-probabilities that depend on the image (a known function, for the tests)."""
    h = int(hashlib.sha256(image_url.encode()).hexdigest()[:12], 16)
    words = list(dict.fromkeys(o.split()[0] for o in _options(prompt))) + ["The", "I"]
    weights = [1.0 + (h >> (3 * k)) % 8 for k in range(len(words))]
    total = sum(weights) + 2.0  # the rest of the vocabulary
    ranked = sorted(((w, math.log(v / total)) for w, v in zip(words, weights)), key=lambda x: -x[1])
    return ranked[:top]


def _logprobs(prompt: str, image_url: str, top: int) -> dict:
    ranked = first_token_logprobs(prompt, image_url, top)
    return {"content": [{"token": ranked[0][0], "logprob": ranked[0][1], "bytes": None,
                         "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in ranked]}]}


def _completion(text: str | None, prompt: str, finish_reason: str = "stop", choices: bool = True,
                logprobs: dict | None = None) -> dict:
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason,
              "logprobs": logprobs}
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": MODEL_NAME,
            "choices": [choice] if choices else [],
            "usage": {"prompt_tokens": 85 + len(prompt) // 4, "completion_tokens": 1 + len(text or "") // 4,
                      "total_tokens": 86 + len(prompt) // 4 + len(text or "") // 4}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops connections when 16 clients connect at once


class ChatServer:
    def __init__(self, plan: dict[int, str] | Plan | None = None, *, key: str | None = None,
                 delay: float = 0.0, retry_after: str = "0.05", hang_seconds: float = 5.0):
        self.plan: Plan = plan if callable(plan) else (lambda n, body, table=dict(plan or {}): table.get(n))
        self.key, self.delay, self.retry_after, self.hang_seconds = key, delay, retry_after, hang_seconds
        self.requests = 0
        self.behaviours: list[str] = []
        self.prompts: list[str] = []
        self.usage = [0, 0]  # prompt and completion tokens of every answer delivered
        self.in_flight = self.max_in_flight = 0  # requests being answered at once (with a delay)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> ChatServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _next(self, body: dict[str, Any]) -> str:
        with self._lock:
            self.requests += 1
            behaviour = self.plan(self.requests, body) or "ok"
            self.behaviours.append(behaviour)
            return behaviour

    def respond(self, behaviour: str, body: dict[str, Any], auth: str) -> tuple[int, dict[str, str], bytes] | None:
        """(status, headers, body bytes) for one chat request; None: close without answering."""
        content = body["messages"][-1]["content"]
        prompt = next(part["text"] for part in content if part["type"] == "text")
        image_url = next(part["image_url"]["url"] for part in content if part["type"] == "image_url")
        with self._lock:
            self.prompts.append(prompt)
        if behaviour == "hang":  # then hang up: a client still waiting gets nothing
            self._stop.wait(self.hang_seconds)
            return None
        if self.delay:
            with self._lock:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._stop.wait(self.delay)
            with self._lock:
                self.in_flight -= 1
        error = {"500": (500, "internal error, try again"), "401": (401, "invalid api key"),
                 "policy": (400, "Your request was rejected as a result of our content policy."),
                 "echo_key": (400, f"bad request; you sent Authorization: {auth}")}
        if behaviour in error:
            status, message = error[behaviour]
            code = "content_policy_violation" if behaviour == "policy" else None
            return status, {}, json.dumps({"error": {"message": message, "type": "test", "code": code}}).encode()
        if behaviour == "429":
            return 429, {"Retry-After": self.retry_after}, b'{"error": {"message": "slow down", "type": "rate"}}'
        if behaviour == "malformed":
            return 200, {}, b'{"id": "chatcmpl-test", "object": "chat.completion", "choices": [{"index"'
        answer = {"refuse": "I'm sorry, but I can't help with identifying people in images.",
                  "content_filter": None}.get(behaviour, answer_for(prompt, image_url))
        finish = "content_filter" if behaviour == "content_filter" else "stop"
        logprobs = None
        if body.get("logprobs") and behaviour != "no_logprobs":
            logprobs = _logprobs(prompt, image_url, int(body.get("top_logprobs") or 1))
            answer = logprobs["content"][0]["token"]
        payload = _completion(answer, prompt, finish, choices=behaviour != "empty", logprobs=logprobs)
        if behaviour == "empty":
            del payload["usage"]
        return 200, {}, json.dumps(payload).encode()

    def _delivered(self, data: bytes) -> None:
        """Count the tokens of an answer the client really received."""
        if b'"usage"' in data:
            usage = json.loads(data)["usage"]
            with self._lock:
                self.usage[0] += usage["prompt_tokens"]
                self.usage[1] += usage["completion_tokens"]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body wait on a delayed ACK (40 ms)

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, headers: dict[str, str], data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                    server._delivered(data)
                except OSError:  # the client gave up (timeout): nothing to answer
                    self.close_connection = True

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    data = {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "created": 0,
                                                        "owned_by": "test"}]}
                    self._send(200, {}, json.dumps(data).encode())
                else:
                    self._send(404, {}, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {}, b'{"error": {"message": "not found"}}')
                    return
                auth = self.headers.get("Authorization", "")
                if server.key is not None and auth != f"Bearer {server.key}":
                    self._send(401, {}, b'{"error": {"message": "invalid api key", "code": "invalid_api_key"}}')
                    return
                response = server.respond(server._next(body), body, auth)
                if response is None:
                    self.close_connection = True
                else:
                    self._send(*response)

        return Handler
