"""OpenAI-compatible chat-completions APIs: OpenAI, Gemini's OpenAI endpoint, `vllm serve`, ...

One request per query (image as a JPEG data URL + the rendered prompt), sent concurrently from
an event loop of the backend's own (a thread, so the backend also works where a loop already
runs, e.g. in Jupyter). Identical requests (same endpoint, model, messages, params; e.g. one
JSON prompt asking three attributes) are sent once and their answer shared; every answer is
cached on disk under `cache_dir/api`, so a rerun never pays twice. Answers are returned as raw
text (vlmface.interpret parses them); a refusal by the API itself (finish_reason
"content_filter", a content-policy 400) is status "refused".

The key is read from the environment variable named by `api_key_env` and lives only in the
client: it is never an option, never written, and redacted from every message kept.

Options (registry entry < --option / flags): base_url, api_key_env, api_key_optional,
model (served model name; default: the entry's weights, else the server's first model),
concurrency, timeout, max_retries, retry_base_delay, retry_max_delay, max_cost, prices
({input, output} USD per 1M tokens), image_max_side, jpeg_quality, image_detail, temperature,
max_new_tokens (else the template's, else 64), max_tokens_param, system_prompt, mode (generate |
choice: label log-likelihoods from the API's top_logprobs, see api_choice.py), choice_score, choice_prefix,
request_params (extra create() arguments, e.g. {seed: 0}), image_tokens_estimate, cache.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Coroutine
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from vlmface.backends.api_choice import choice_from_top, choice_params, no_logprobs_error
from vlmface.backends.api_request import ChatRequest, ImageEncoding, jpeg_data_url, pixel_sha256
from vlmface.backends.api_transport import Failed, FatalAPIError, Reply, RetryPolicy, Transport
from vlmface.backends.api_usage import Ledger, Prices
from vlmface.backends.base import Answer, Backend, Option, Query, Question
from vlmface.backends.choice import CHOICE_OPTIONS, choice_score
from vlmface.errors import BackendError
from vlmface.response_cache import ResponseCache

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_MAX_TOKENS = 64
OPTIONS: dict[str, Option] = {
    # answer-changing: part of the run identity
    "mode": Option(str, "generate", True, "generate (free text) or choice (one-token labels scored from the "
                   "API's top_logprobs; see api_choice.py)"),
    **CHOICE_OPTIONS,
    "base_url": Option(str, None, True, "OpenAI-compatible endpoint (default: OpenAI's)"),
    "model": Option(str, None, True, "served model name (default: the entry's weights, else the server's first)"),
    "temperature": Option(float, 0.0, True, "sampling temperature"),
    "max_new_tokens": Option(int, None, True, f"answer budget (default: the template's, else {DEFAULT_MAX_TOKENS})"),
    "system_prompt": Option(str, None, True, "a system message before the question (default: the template's)"),
    "request_params": Option(dict, None, True, "extra create() arguments, e.g. {seed: 0}"),
    "image_max_side": Option(int, 512, True, "longest image side sent, in pixels"),
    "jpeg_quality": Option(int, 90, True, "JPEG quality of the image sent (1-100)"),
    "image_detail": Option(str, None, True, "low, high or auto (default: the API's)"),
    # how requests are sent and paid for: not part of the identity
    "api_key_env": Option(str, "OPENAI_API_KEY", False, "environment variable holding the key"),
    "api_key_optional": Option(bool, False, False, "servers without auth: send a dummy key if the variable is unset"),
    "concurrency": Option(int, 8, False, "requests in flight"),
    "timeout": Option(float, 60.0, False, "seconds per request before a retry"),
    "max_retries": Option(int, 6, False, "retries on 429/5xx/timeouts/connection errors"),
    "retry_base_delay": Option(float, 1.0, False, "seconds before the first retry (doubling after)"),
    "retry_max_delay": Option(float, 60.0, False, "longest wait between retries, in seconds"),
    "max_cost": Option(float, None, False, "stop before this command spends more than USD (default: no cap)"),
    "prices": Option(dict, None, False, "{input: USD, output: USD} per million tokens"),
    "max_tokens_param": Option(str, "max_tokens", False, "name of the answer-budget request parameter"),
    "image_tokens_estimate": Option(int, 1500, False, "tokens per image assumed for --max-cost before a reply"),
    "cache": Option(bool, True, False, "cache answers on disk under cache_dir/api"),
}
_UNSENT = object()  # a request the budget (or a fatal error) kept from being sent


class BudgetExceeded(BackendError):
    """--max-cost reached: the run stops before a request could exceed it."""


class _LoopThread:
    """An event loop running in a daemon thread; `run` blocks until a coroutine is done."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="vlmface-api", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


class APIBackend(Backend):
    prompt_style = "question"
    default_batch_size = 64  # samples per batch: enough requests in flight for the concurrency
    options_schema = OPTIONS

    @classmethod
    def check_options(cls, options: dict[str, Any], where: str = "--option") -> dict[str, Any]:
        if "api_key" in options:
            raise BackendError("never pass the API key as an option (it would be written to run.json): "
                               "export it and name the variable with --api-key-env NAME")
        return super().check_options(options, where)

    def __init__(self, entry, options: dict[str, Any] | None = None):
        super().__init__(entry, options)
        opts = self.options
        self.mode = str(opts.get("mode") or "generate")
        if self.mode not in ("generate", "choice"):
            raise BackendError(f"model {entry.name!r}: the api backend has modes generate and choice "
                               f"(from the API's token log-probabilities), not {self.mode!r}")
        self.choice_score = choice_score(opts)
        self.key_env = str(opts["api_key_env"])
        self._key = self._read_key(opts)
        self.model = str(opts.get("model") or entry.weights or "")
        self.base_url = opts.get("base_url")
        if opts.get("image_detail") not in (None, "low", "high", "auto"):
            raise BackendError(f"option image_detail: use low, high or auto, not {opts['image_detail']!r}")
        self.encoding = ImageEncoding(max_side=_int(opts, "image_max_side", 16),
                                      quality=_int(opts, "jpeg_quality", 1, 100),
                                      detail=opts.get("image_detail"))
        self.ledger = Ledger(self._prices(), _float(opts, "max_cost") if "max_cost" in opts else None)
        if self.ledger.max_cost is not None and self.ledger.prices is None:
            raise BackendError(f"--max-cost needs the prices of {self.model or entry.name!r}: set "
                               "`prices: {input: USD, output: USD}` (per million tokens) in the registry "
                               "or --option 'prices={input: 2.5, output: 10}'")
        cache_dir = opts.get("cache_dir")
        self.cache = ResponseCache(Path(cache_dir) / "api" if cache_dir and opts.get("cache", True) else None)
        self.stats = {"queries": 0, "unique_requests": 0, "cache_hits": 0, "sent": 0, "errors": 0,
                      "api_refusals": 0}
        self.budget_stopped = False
        self._fatal: FatalAPIError | None = None
        self._loop = _LoopThread()
        try:
            self.transport = self._loop.run(self._make_transport())
        except BaseException:
            self._loop.close()
            raise

    # ----- setup --------------------------------------------------------------------------
    def _read_key(self, opts: dict[str, Any]) -> str:
        key = os.environ.get(self.key_env, "")
        if key:
            return key
        if opts.get("api_key_optional"):
            return "EMPTY"  # servers without auth (a local `vllm serve`) accept any key
        raise BackendError(f"model {self.entry.name!r}: the environment variable {self.key_env} holding the "
                           f"API key is not set; export it, or name another variable with --api-key-env NAME")

    def _prices(self) -> Prices | None:
        raw = self.options.get("prices")
        if raw is None and self.entry.weights:
            from vlmface.registry import load_registry

            raw = next((e.options["prices"] for e in load_registry().values()
                        if e.backend == "api" and e.weights == self.entry.weights and "prices" in e.options), None)
        return Prices.parse(raw, f"model {self.entry.name!r}")

    async def _make_transport(self) -> Transport:
        import openai

        client = openai.AsyncOpenAI(api_key=self._key, base_url=self.base_url or None, max_retries=0,
                                    timeout=_float(self.options, "timeout"))
        policy = RetryPolicy(max_retries=_int(self.options, "max_retries", 0),
                             base_delay=_float(self.options, "retry_base_delay"),
                             max_delay=_float(self.options, "retry_max_delay"))
        return Transport(client, policy, timeout=_float(self.options, "timeout"),
                         concurrency=_int(self.options, "concurrency", 1), redact=self.redact,
                         key_env=self.key_env)

    def redact(self, text: str) -> str:
        return text.replace(self._key, "[redacted]") if len(self._key) >= 6 else text

    @property
    def endpoint(self) -> str:
        return self.redact(str(self.transport.client.base_url)).rstrip("/")

    @classmethod
    def preview(cls, entry, options: dict[str, Any], query: Query) -> dict[str, Any]:
        opts = cls.resolve_options(entry, options)
        encoding = ImageEncoding(max_side=_int(opts, "image_max_side", 16),
                                 quality=_int(opts, "jpeg_quality", 1, 100), detail=opts.get("image_detail"))
        request = ChatRequest(model=str(opts.get("model") or entry.weights or ""), prompt=_prompt_text(query),
                              image=query.image, image_sha256="", encoding=encoding, params={},
                              system=_system_prompt(opts, query))
        return {"messages": request._messages("<the image, as a JPEG data URL>")}

    # ----- facts for run.json -------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        return {"backend": "api", "weights": self.entry.weights, "model": self.model, "base_url": self.endpoint,
                "image": self.encoding.describe(), "temperature": self.options.get("temperature"),
                "max_new_tokens": self.options.get("max_new_tokens"), "mode": self.mode,
                "choice_score": self.choice_score if self.mode == "choice" else None,
                "system_prompt": self.options.get("system_prompt"),
                "request_params": self.options.get("request_params")}

    def unsupported_reason(self, question: Question) -> str | None:
        if self.mode == "choice" and not question.labels:
            return (f"mode 'choice' needs a label set, and {question.attribute!r} is numeric; "
                    "use mode 'generate' for it")
        return None

    def prepare(self, questions: list[Question]) -> dict[str, Any]:
        self._ensure_model()
        prices = self.ledger.prices
        return {"model": self.model, "base_url": self.endpoint, "api_key_env": self.key_env,
                "concurrency": self.transport.concurrency, "timeout_s": self.transport.timeout,
                "max_retries": self.transport.policy.max_retries, "max_cost_usd": self.ledger.max_cost,
                "prices_usd_per_million_tokens": vars(prices) if prices else None,
                "cache": str(self.cache.root) if self.cache.root else None,
                "openai": _version("openai")}

    def _ensure_model(self) -> None:
        if not self.model:
            self.model = self._loop.run(self._served_model())

    async def _served_model(self) -> str:
        try:
            page = await self.transport.client.models.list()
            names = [m.id for m in page.data]
        except Exception as exc:
            raise BackendError(f"model {self.entry.name!r}: no model name given and {self.endpoint}/models "
                               f"could not be listed ({self.redact(str(exc))}); pass --option model=NAME") from None
        if not names:
            raise BackendError(f"{self.endpoint}/models lists no model; pass --option model=NAME")
        if len(names) > 1:
            log.warning("%s serves %d models; using the first, %s (choose with --option model=NAME)",
                        self.endpoint, len(names), names[0])
        return names[0]

    def run_summary(self) -> dict[str, Any]:
        return {"model": self.model, **self.stats, "http_requests": self.transport.attempts,
                "retries": dict(self.transport.retry_reasons), **self.ledger.summary(),
                "budget_stopped": self.budget_stopped}

    # ----- answering ----------------------------------------------------------------------
    def answer(self, queries: list[Query]) -> list[Answer]:
        if not queries:
            return []
        if self.budget_stopped:
            raise self._budget_error(len(queries))
        self._ensure_model()
        requests = self._requests(queries)
        unique = {r.key: r for r in requests}
        self.stats["queries"] += len(queries)
        self.stats["unique_requests"] += len(unique)
        results = self._loop.run(self._resolve_all(list(unique.values())))
        if self._fatal is not None:
            raise self._fatal
        unsent = sum(results[r.key][0] is _UNSENT for r in requests)
        if unsent:
            raise self._budget_error(unsent)
        seen: set[str] = set()
        answers = []
        for query, request in zip(queries, requests):
            result, source = results[request.key]
            answers.append(self._answer(query.question, result, "shared" if request.key in seen else source))
            seen.add(request.key)
        return answers

    def _requests(self, queries: list[Query]) -> list[ChatRequest]:
        hashes: dict[int, str] = {}  # the runner passes one image object per sample
        requests = []
        for query in queries:
            image_hash = hashes.get(id(query.image)) or hashes.setdefault(id(query.image), pixel_sha256(query.image))
            meta = query.question.template.metadata if query.question.template else {}
            max_tokens = int(self.options.get("max_new_tokens") or meta.get("max_new_tokens") or DEFAULT_MAX_TOKENS)
            params = {str(self.options["max_tokens_param"]): max_tokens, **(self.options.get("request_params") or {})}
            if self.mode == "choice":
                params.update(choice_params(str(self.options["max_tokens_param"])))
            if self.options.get("temperature") is not None:
                params.setdefault("temperature", float(self.options["temperature"]))
            requests.append(ChatRequest(model=self.model, prompt=_prompt_text(query), image=query.image,
                                        image_sha256=image_hash, encoding=self.encoding, params=params,
                                        system=_system_prompt(self.options, query), endpoint=self.endpoint))
        return requests

    async def _resolve_all(self, requests: list[ChatRequest]) -> dict[str, tuple[Any, str]]:
        encoded: dict[str, str] = {}
        results = await asyncio.gather(*(self._resolve(r, encoded) for r in requests))
        return {r.key: result for r, result in zip(requests, results)}

    async def _resolve(self, request: ChatRequest, encoded: dict[str, str]) -> tuple[Any, str]:
        try:
            return await self._fetch(request, encoded)
        except FatalAPIError as exc:
            self._fatal = self._fatal or exc
            return _UNSENT, "unsent"
        except Exception as exc:  # one odd request must not sink the batch
            log.warning("request for %r failed: %s", request.prompt[:60], exc, exc_info=True)
            return Failed(f"{type(exc).__name__}: {self.redact(str(exc))[:500]}", 0), "api"

    async def _fetch(self, request: ChatRequest, encoded: dict[str, str]) -> tuple[Any, str]:
        cached = self.cache.get(request.key)
        if cached is not None:
            self.stats["cache_hits"] += 1
            return Reply.from_json(cached), "cache"
        if request.image_sha256 not in encoded:
            encoded[request.image_sha256] = jpeg_data_url(request.image, self.encoding)
        max_tokens = int(request.params[str(self.options["max_tokens_param"])])
        image_tokens = _int(self.options, "image_tokens_estimate", 0)
        estimate = self.ledger.estimate(request.estimated_input_tokens(image_tokens), max_tokens)
        reserved = False

        def admit() -> bool:
            nonlocal reserved
            if self._fatal is not None or self.budget_stopped:
                return False
            if not reserved:
                reserved = self.ledger.reserve(estimate)
                self.budget_stopped = not reserved
            return reserved

        result: Reply | Failed | None = None
        try:
            result = await self.transport.send(request.body(encoded[request.image_sha256]), admit)
        finally:
            if reserved and not isinstance(result, Reply):
                self.ledger.release(estimate)
        if result is None:
            return _UNSENT, "unsent"
        if isinstance(result, Reply):
            self.ledger.settle(estimate, result.prompt_tokens, result.completion_tokens)
            self.stats["sent"] += 1
            self._store(request, result)
        return result, "api"

    def _store(self, request: ChatRequest, reply: Reply) -> None:
        try:
            self.cache.put(request.key, {"model": self.model, "prompt": request.prompt, **reply.to_json()})
        except OSError as exc:  # the answer is still good; only a rerun would pay for it again
            log.warning("could not cache an answer under %s: %s", self.cache.root, exc)

    def _answer(self, question: Question, result: Reply | Failed, source: str) -> Answer:
        if isinstance(result, Failed):
            self.stats["errors"] += 1
            return Answer(label=None, status="error", raw=result.message, extra={"attempts": result.attempts},
                          error_kind="answer")  # an API failure after the last retry
        extra: dict[str, Any] = {"source": source}
        if result.finish_reason not in (None, "stop"):
            extra["finish_reason"] = result.finish_reason
        if result.refusal is not None:
            self.stats["api_refusals"] += 1
            return Answer(label=None, status="refused", raw=result.text, extra={**extra, "api_refusal": result.refusal})
        if self.mode == "choice":
            return self._choose(question, result, extra)
        return Answer(label=None, status="ok", raw=result.text, extra=extra)

    def _choose(self, question: Question, result: Reply, extra: dict[str, Any]) -> Answer:
        if result.top_logprobs is None:
            raise no_logprobs_error(self.model, self.endpoint)
        answer = choice_from_top(question, result.top_logprobs, self.choice_score,
                                 str(self.options.get("choice_prefix") or ""))
        answer.extra = {**(answer.extra or {}), **extra}
        return answer

    def _budget_error(self, unsent: int) -> BudgetExceeded:
        return BudgetExceeded(
            f"stopped before exceeding --max-cost {self.ledger.max_cost:g} USD: spent {self.ledger.spent:.4f} USD "
            f"on {self.stats['sent']} requests; {unsent} queries were not sent. Answers received are cached: "
            "rerun with a higher --max-cost to continue (cached answers cost nothing)")

    def close(self) -> None:
        try:
            if not self._loop.loop.is_closed() and self._loop.thread.is_alive():
                self._loop.run(self.transport.client.close())
        except Exception as exc:  # closing must never hide the run's own outcome
            log.debug("closing the API client failed: %s", exc)
        finally:
            self._loop.close()


def _system_prompt(options: dict[str, Any], query: Query) -> str | None:
    meta = query.question.template.metadata if query.question.template else {}
    return options.get("system_prompt") or meta.get("system_prompt")


def _prompt_text(query: Query) -> str:
    if query.prompt is not None:
        return query.prompt
    template, question = query.question.template, query.question
    if template is None:
        raise BackendError(f"query {query.sample_id!r} has no prompt and its question no template")
    return template.render_question(attribute=question.attribute, choices=question.choices,
                                    labels=list(question.labels), task=question.task, meta=query.meta)


def _int(opts: dict[str, Any], name: str, lo: int, hi: int | None = None) -> int:
    try:
        value = int(opts[name])
    except (TypeError, ValueError):
        raise BackendError(f"option {name}: expected a whole number, got {opts[name]!r}") from None
    if value < lo or (hi is not None and value > hi):
        raise BackendError(f"option {name}: {value} is out of range ({lo}..{hi if hi is not None else ''})")
    return value


def _float(opts: dict[str, Any], name: str) -> float:
    try:
        value = float(opts[name])
    except (TypeError, ValueError):
        raise BackendError(f"option {name}: expected a number, got {opts[name]!r}") from None
    if value < 0:
        raise BackendError(f"option {name}: cannot be negative ({value})")
    return value


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
