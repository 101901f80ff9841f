"""Sending one chat-completions request: concurrency slots, retries, backoff, Retry-After.

The openai client runs with max_retries=0, so every retry is decided here:
- retried: 429, 408, 409, 5xx, timeouts, connection errors, and malformed answers (a body that
  is not JSON, no choices); exponential backoff with jitter, or the server's Retry-After
  (`retry-after-ms`, `retry-after` in seconds or as an HTTP date), which also pauses every other
  request of the run (a rate limit is global);
- refused: a 400 that names a content policy (the API declined to look at the image);
- fatal (the run stops, since every later request would fail the same way): 401, 403, 404;
- any other 4xx: an error for that request alone, no retry.
Error messages pass through `redact`, so the key never leaves this module even when a server
echoes it back.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import openai

from vlmface.backends.api_choice import first_token_top_logprobs
from vlmface.errors import BackendError

log = logging.getLogger(__name__)

_POLICY = re.compile(r"content[ _-]?(?:management[ _-]?)?polic|content[ _-]?filter|responsible ?ai"
                     r"|safety (?:system|polic|filter)|prohibited content", re.IGNORECASE)
_RETRY_STATUS = {408, 409, 429}
_FATAL_STATUS = {401: "the server rejected the API key", 403: "the key may not use this model",
                 404: "no such model or endpoint"}
MAX_RETRY_AFTER = 600.0  # seconds; a longer Retry-After is not worth waiting for within a run


class FatalAPIError(BackendError):
    """Every request would fail the same way (bad key, unknown model): stop the run."""


@dataclass
class Reply:
    """A model's answer as cached: the text, why it stopped, and what it cost."""

    text: str | None
    finish_reason: str | None = None
    refusal: str | None = None  # the API itself declined: content_filter | content_policy | refusal
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    top_logprobs: list[list[Any]] | None = None  # [[token, logprob], ...] of the first token, if sent

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reply:
        return cls(**{k: data.get(k) for k in ("text", "finish_reason", "refusal",
                                                 "prompt_tokens", "completion_tokens", "top_logprobs")})


@dataclass
class Failed:
    """A request that got no usable answer after its last attempt."""

    message: str
    attempts: int


@dataclass
class _Retry:
    reason: str
    message: str
    retry_after: float | None = None


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6
    base_delay: float = 1.0  # seconds before the first retry (then x2 each time)
    max_delay: float = 60.0

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Exponential backoff with jitter: a uniform draw in [0.5, 1] x base x 2^retry, capped."""
        return min(self.max_delay, self.base_delay * 2 ** retry) * rng.uniform(0.5, 1.0)


def retry_after_seconds(headers: Any) -> float | None:
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                continue
            seconds = when.timestamp() - time.time()
        if math.isfinite(seconds):
            return min(max(seconds, 0.0), MAX_RETRY_AFTER)
    return None


def reply_from_completion(completion: Any, redact: Callable[[str], str]) -> Reply | _Retry:
    choices = getattr(completion, "choices", None)
    if choices is None:
        return _Retry("malformed", f"the server's answer is not a chat completion: {redact(str(completion))[:200]!r}")
    if not choices:
        return _Retry("no_choices", "the server answered with an empty choice list")
    choice = choices[0]
    message = getattr(choice, "message", None)
    text = getattr(message, "content", None)
    refusal_text = getattr(message, "refusal", None)
    usage = getattr(completion, "usage", None)
    finish_reason = getattr(choice, "finish_reason", None)
    reply = Reply(text=redact(text) if isinstance(text, str) else None, finish_reason=finish_reason,
                  prompt_tokens=getattr(usage, "prompt_tokens", None),
                  completion_tokens=getattr(usage, "completion_tokens", None),
                  top_logprobs=first_token_top_logprobs(choice))
    if finish_reason == "content_filter":
        reply.refusal = "content_filter"
    elif refusal_text:
        reply.refusal, reply.text = "refusal", redact(str(refusal_text))
    return reply


class Transport:
    """Sends requests through an AsyncOpenAI client, at most `concurrency` at a time."""

    def __init__(self, client: Any, policy: RetryPolicy, timeout: float, concurrency: int,
                 redact: Callable[[str], str], seed: int | None = None, key_env: str | None = None):
        self.client = client
        self.key_env = key_env  # the environment variable the key came from, named on 401/403
        self.policy = policy
        self.timeout = timeout
        self.redact = redact
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._pause_until = 0.0
        self._rng = random.Random(seed)
        self.attempts = 0
        self.retry_reasons: Counter[str] = Counter()

    async def send(self, body: dict[str, Any], admit: Callable[[], bool]) -> Reply | Failed | None:
        """The reply, a Failed after the last retry, or None if `admit()` said no before sending.
        `admit` runs with a slot held, just before each attempt goes on the wire."""
        last: _Retry | None = None
        for attempt in range(self.policy.max_retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt - 1, last))
            await self._wait_for_pause()
            async with self._slots:
                if not admit():
                    return None
                self.attempts += 1
                outcome = await self._attempt(body)
            if not isinstance(outcome, _Retry):
                return outcome if isinstance(outcome, Reply) else Failed(outcome.message, attempt + 1)
            last = outcome
            self.retry_reasons[outcome.reason] += 1
            log.info("retrying (%s): %s", outcome.reason, outcome.message)
        assert last is not None
        return Failed(f"{last.message} (gave up after {self.policy.max_retries + 1} attempts)",
                      self.policy.max_retries + 1)

    def _delay(self, retry: int, last: _Retry | None) -> float:
        if last is not None and last.retry_after is not None:
            delay = last.retry_after * (1 + 0.1 * self._rng.random())
            if last.reason == "429":
                self._pause_until = max(self._pause_until, time.monotonic() + delay)
            return delay
        return self.policy.backoff(retry, self._rng)

    async def _wait_for_pause(self) -> None:
        while (wait := self._pause_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)

    async def _attempt(self, body: dict[str, Any]) -> Reply | Failed | _Retry:
        try:
            completion = await self.client.chat.completions.create(**body, timeout=self.timeout)
        except openai.APITimeoutError:
            return _Retry("timeout", f"no answer within the timeout of {self.timeout:g} s")
        except openai.APIConnectionError as exc:
            return _Retry("connection", f"connection error: {self.redact(str(exc.__cause__ or exc))}")
        except openai.APIStatusError as exc:
            return self._status_outcome(exc)
        except (ValueError, openai.APIResponseValidationError) as exc:  # a 200 whose body is not JSON
            return _Retry("malformed", f"malformed answer from the server: {self.redact(str(exc))[:200]}")
        except openai.OpenAIError as exc:
            return Failed(f"{type(exc).__name__}: {self.redact(str(exc))[:500]}", 1)
        return reply_from_completion(completion, self.redact)

    def _status_outcome(self, exc: openai.APIStatusError) -> Reply | Failed | _Retry:
        status, message = exc.status_code, self.redact(str(exc))[:500]
        if status in _RETRY_STATUS or status >= 500:
            return _Retry(str(status), f"HTTP {status}: {message}", retry_after_seconds(exc.response.headers))
        if status in (400, 422) and (_POLICY.search(message) or _POLICY.search(str(getattr(exc, "code", "")))):
            return Reply(text=message, refusal="content_policy", prompt_tokens=0, completion_tokens=0)
        if status in _FATAL_STATUS:
            fix = ""
            if status in (401, 403) and self.key_env:
                fix = (f"; the key comes from the environment variable {self.key_env}: export the right key "
                       "there, or name another variable with --api-key-env NAME")
            raise FatalAPIError(f"HTTP {status} from {self.redact(str(self.client.base_url))}: "
                                f"{_FATAL_STATUS[status]} ({message}){fix}")
        return Failed(f"HTTP {status}: {message}", 1)
