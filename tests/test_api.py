"""The api backend against a real HTTP server on 127.0.0.1 (tests/chat_server.py), on real faces."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import time
from pathlib import Path

import pytest
from PIL import Image

from vlmface.backends.api import APIBackend, BudgetExceeded
from vlmface.backends.api_request import ChatRequest, ImageEncoding, jpeg_data_url, pixel_sha256
from vlmface.backends.api_transport import RetryPolicy, retry_after_seconds
from vlmface.backends.base import Query, Question
from vlmface.errors import BackendError
from vlmface.interpret import answered
from vlmface.prompts import load_template
from vlmface.registry import ModelEntry, resolve_model

from chat_server import MODEL_NAME, ChatServer, answer_for, fake_key

KEY_ENV = "VLMFACE_TEST_KEY"
TEMPLATE = load_template("vlm_question")
GENDER = Question(attribute="gender", kind="categorical", labels=("Male", "Female"),
                  display={"Male": "male", "Female": "female"}, template=TEMPLATE, task="utkface")
AGE = Question(attribute="age", kind="numeric", labels=(), template=TEMPLATE, task="utkface")
FAST = {"timeout": 0.5, "retry_base_delay": 0.01, "retry_max_delay": 0.05, "max_retries": 2}


@pytest.fixture
def key(monkeypatch) -> str:
    value = fake_key()
    monkeypatch.setenv(KEY_ENV, value)
    return value


@pytest.fixture(scope="module")
def faces(utkface_dir) -> list[Image.Image]:
    return [Image.open(path).convert("RGB") for path in sorted(utkface_dir.glob("*.jpg"))[:12]]


@pytest.fixture
def make_backend(tmp_path, key):
    made: list[APIBackend] = []

    def make(url: str, model: str = "api:test-model", **options) -> APIBackend:
        entry = resolve_model(model)
        backend = APIBackend(entry, {"base_url": url, "api_key_env": KEY_ENV, "cache_dir": tmp_path / "cache",
                                     **FAST, **options})
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def _queries(images: list[Image.Image], question: Question = GENDER) -> list[Query]:
    prompt = TEMPLATE.render_question(attribute=question.attribute, choices=question.choices,
                                      labels=list(question.labels), task="utkface", meta={})
    return [Query(sample_id=f"s{i}", image=image, question=question, prompt=prompt) for i, image in enumerate(images)]


def _files_text(root: Path) -> str:
    return "".join(p.read_text(encoding="utf-8", errors="replace") for p in root.rglob("*") if p.is_file())


def test_answers_are_parsed_and_in_query_order(make_backend, faces):
    with ChatServer() as server:
        backend = make_backend(server.url)
        queries = _queries(faces[:6]) + _queries(faces[:2], AGE)
        answers = answered(backend, queries)
    assert [a.status for a in answers] == ["ok"] * 8
    assert [a.label for a in answers[:6]] == [
        {"male": "Male", "female": "Female"}[server_answer] for server_answer in
        (answer_for(q.prompt, jpeg_data_url(q.image, ImageEncoding())) for q in queries[:6])]
    assert all(isinstance(a.label, float) and 18 <= a.label < 78 for a in answers[6:])
    assert server.requests == 8 and backend.run_summary()["prompt_tokens"] == server.usage[0]


def test_identical_requests_are_sent_once_and_shared(make_backend, faces):
    with ChatServer() as server:
        backend = make_backend(server.url)
        answers = answered(backend, _queries([faces[0]] * 3 + [faces[1]]))
    assert server.requests == 2
    assert [a.extra["source"] for a in answers] == ["api", "shared", "shared", "api"]
    assert len({a.label for a in answers[:3]}) == 1
    assert backend.run_summary()["unique_requests"] == 2


def test_cache_means_a_second_backend_sends_nothing_and_holds_no_key(make_backend, faces, tmp_path, key):
    with ChatServer(key=key) as server:
        first = answered(make_backend(server.url), _queries(faces[:5]))
        sent = server.requests
        second_backend = make_backend(server.url)
        second = answered(second_backend, _queries(faces[:5]))
    assert sent == 5 and server.requests == 5
    assert [a.label for a in first] == [a.label for a in second]
    assert all(a.extra["source"] == "cache" for a in second)
    assert second_backend.run_summary()["cache_hits"] == 5
    files = sorted((tmp_path / "cache" / "api").rglob("*.json"))
    assert len(files) == 5 and all(len(p.stem) == 64 for p in files)
    entry = json.loads(files[0].read_text())
    assert {"text", "prompt", "prompt_tokens", "completion_tokens"} <= entry.keys()
    assert key not in _files_text(tmp_path)


def test_cache_key_covers_model_prompt_image_params_and_endpoint(faces):
    image = faces[0]
    base = dict(model="m", prompt="p", image=image, image_sha256=pixel_sha256(image), encoding=ImageEncoding(),
                params={"max_tokens": 8, "temperature": 0.0}, endpoint="http://a/v1")
    key = ChatRequest(**base).key
    assert ChatRequest(**base).key == key
    variants = [{"model": "n"}, {"prompt": "q"}, {"image_sha256": pixel_sha256(faces[1])},
                {"params": {"max_tokens": 9, "temperature": 0.0}}, {"endpoint": "http://b/v1"},
                {"encoding": ImageEncoding(max_side=256)}, {"system": "be brief"}]
    assert len({ChatRequest(**{**base, **change}).key for change in variants} | {key}) == len(variants) + 1


def test_429_retry_after_is_honoured(make_backend, faces):
    with ChatServer({1: "429"}, retry_after="0.4") as server:
        backend = make_backend(server.url, retry_base_delay=0.001)
        started = time.perf_counter()
        answers = backend.answer(_queries(faces[:1]))
        elapsed = time.perf_counter() - started
    assert answers[0].status == "ok" and server.requests == 2
    assert elapsed >= 0.4  # waited the server's Retry-After (how long at most: benchmarks/latency_bench.py)
    assert backend.run_summary()["retries"] == {"429": 1}


def test_retry_after_formats_and_backoff():
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert 55 < retry_after_seconds({"retry-after": time.strftime("%a, %d %b %Y %H:%M:%S GMT",
                                                                 time.gmtime(time.time() + 60))}) <= 61
    assert retry_after_seconds({"retry-after": "soon"}) is None and retry_after_seconds({}) is None
    import random

    policy, rng = RetryPolicy(base_delay=1.0, max_delay=10.0), random.Random(0)
    delays = [policy.backoff(retry, rng) for retry in range(6)]
    for retry, delay in enumerate(delays):
        assert 0.5 * min(10.0, 2 ** retry) <= delay <= min(10.0, 2 ** retry)
    assert len(set(delays)) == 6  # jittered


def test_500_burst_hang_malformed_and_empty_are_retried(make_backend, faces):
    plan = {1: "500", 2: "500", 3: "hang", 4: "malformed", 5: "empty"}
    with ChatServer(plan) as server:
        backend = make_backend(server.url, concurrency=1, max_retries=6)
        answers = backend.answer(_queries(faces[:2]))
    assert [a.status for a in answers] == ["ok", "ok"]
    assert backend.run_summary()["retries"] == {"500": 2, "timeout": 1, "malformed": 1, "no_choices": 1}


def test_a_query_that_always_fails_is_an_error_not_an_abort(make_backend, faces):
    poisoned = jpeg_data_url(faces[1], ImageEncoding())

    def plan(n, body):
        return "500" if body["messages"][-1]["content"][0]["image_url"]["url"] == poisoned else None

    with ChatServer(plan) as server:
        backend = make_backend(server.url, max_retries=2)
        answers = backend.answer(_queries(faces[:3]))
    assert [a.status for a in answers] == ["ok", "error", "ok"]
    assert "HTTP 500" in answers[1].raw and "gave up after 3 attempts" in answers[1].raw
    assert server.requests == 5


def test_connection_refused_becomes_an_error(make_backend, faces):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = make_backend(f"http://127.0.0.1:{port}/v1", max_retries=1)
    answers = backend.answer(_queries(faces[:2]))
    assert [a.status for a in answers] == ["error", "error"]
    assert "connection" in answers[0].raw.lower()


def test_api_refusals_are_refused_and_echoed_keys_are_redacted(make_backend, faces, key):
    with ChatServer({1: "content_filter", 2: "policy", 3: "refuse", 4: "echo_key"}, key=key) as server:
        backend = make_backend(server.url, concurrency=1)
        answers = answered(backend, _queries(faces[:4]))
    assert [a.status for a in answers] == ["refused", "refused", "refused", "error"]
    assert answers[0].extra["api_refusal"] == "content_filter"
    assert answers[1].extra["api_refusal"] == "content_policy"
    assert "api_refusal" not in answers[2].extra  # a polite refusal text: the parser's call
    assert "Bearer [redacted]" in answers[3].raw and key not in answers[3].raw
    assert backend.run_summary()["api_refusals"] == 2


def test_a_rejected_key_stops_the_run_without_showing_it(make_backend, faces, key, monkeypatch):
    with ChatServer(key="sk-vlmfacetest-the-right-one") as server:
        backend = make_backend(server.url)
        with pytest.raises(BackendError, match="HTTP 401") as err:
            backend.answer(_queries(faces[:3]))
    assert key not in str(err.value) and f"environment variable {KEY_ENV}" in str(err.value)


def test_missing_key_variable_and_key_option_are_clear_errors(tmp_path, monkeypatch):
    entry = resolve_model("api:test-model")
    monkeypatch.delenv("VLMFACE_NO_SUCH_KEY", raising=False)
    with pytest.raises(BackendError, match="VLMFACE_NO_SUCH_KEY .*not set"):
        APIBackend(entry, {"api_key_env": "VLMFACE_NO_SUCH_KEY"})
    with pytest.raises(BackendError, match="never pass the API key"):
        APIBackend(entry, {"api_key": "x"})
    with pytest.raises(BackendError, match="needs the prices"):
        monkeypatch.setenv("VLMFACE_SOME_KEY", fake_key())
        APIBackend(entry, {"api_key_env": "VLMFACE_SOME_KEY", "max_cost": 1})


def test_budget_stops_before_it_is_exceeded(make_backend, faces):
    # USD per 1M tokens: a request is reserved at ~0.16 USD (image estimate 1500 tokens) and
    # really costs ~0.011 USD, so about 4 requests fit in 0.2 USD, one at a time
    prices = {"input": 100.0, "output": 100.0}
    with ChatServer() as server:
        backend = make_backend(server.url, prices=prices, max_cost=0.2, concurrency=1)
        with pytest.raises(BudgetExceeded, match="--max-cost 0.2 USD"):
            backend.answer(_queries(faces[:12]))
        spent = (server.usage[0] * 100 + server.usage[1] * 100) / 1e6
        summary = backend.run_summary()
        assert 0 < server.requests < 12 and spent <= 0.2
        assert summary["budget_stopped"] and summary["cost_usd"] == pytest.approx(spent)
        with pytest.raises(BudgetExceeded):
            backend.answer(_queries(faces[:1]))
        # a new run with a larger budget pays only for what was not answered before
        sent = server.requests
        answers = make_backend(server.url, prices=prices, max_cost=5).answer(_queries(faces[:12]))
    assert all(a.status == "ok" for a in answers)
    assert server.requests - sent == 12 - sent


def test_served_entry_finds_the_model_and_needs_no_key(tmp_path, monkeypatch, faces):
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    with ChatServer() as server:
        backend = APIBackend(resolve_model("served"), {"base_url": server.url, "cache_dir": tmp_path})
        try:
            setup = backend.prepare([GENDER])
            assert setup["model"] == MODEL_NAME and backend.identity()["model"] == MODEL_NAME
            assert backend.answer(_queries(faces[:1]))[0].status == "ok"
        finally:
            backend.close()


def test_registry_aliases_carry_endpoint_key_variable_and_prices():
    gemini = resolve_model("gemini-2.0-flash")
    assert gemini.backend == "api" and "generativelanguage.googleapis.com" in gemini.options["base_url"]
    assert gemini.options["api_key_env"] == "GEMINI_API_KEY"
    for name in ("gpt-4o", "gpt-4o-mini", "gemini-1.5-flash", "gemini-2.5-flash", "served"):
        assert set(resolve_model(name).options["prices"]) == {"input", "output"}


def test_api_model_name_gets_registry_prices(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", fake_key())
    backend = APIBackend(resolve_model("api:gpt-4o"), {})
    try:
        assert backend.ledger.prices.input == 2.5
        override = APIBackend(ModelEntry(name="x", backend="api", weights="gpt-4o"),
                              {"prices": {"input": 1, "output": 2}})
        assert override.ledger.prices.output == 2.0
        override.close()
    finally:
        backend.close()


def test_images_are_jpeg_with_the_long_side_capped(faces):
    wide = faces[0].resize((1000, 500))
    for image, side, expected in ((wide, 512, (512, 256)), (faces[0], 512, faces[0].size), (wide, 128, (128, 64))):
        url = jpeg_data_url(image, ImageEncoding(max_side=side))
        assert url.startswith("data:image/jpeg;base64,")
        decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert decoded.format == "JPEG" and decoded.size == expected


def test_concurrency_overlaps_slow_requests(make_backend, faces):
    with ChatServer(delay=0.1) as server:
        backend = make_backend(server.url, concurrency=16, cache=False)
        answers = backend.answer(_queries(faces) + _queries(faces, AGE))
    assert len(answers) == server.requests == 24
    assert server.max_in_flight > 1  # requests overlapped (the speed-up: benchmarks/latency_bench.py)


def test_answer_works_inside_a_running_event_loop(make_backend, faces):
    with ChatServer() as server:
        backend = make_backend(server.url)

        async def notebook_cell():
            return backend.answer(_queries(faces[:2]))

        answers = asyncio.run(notebook_cell())
    assert [a.status for a in answers] == ["ok", "ok"]
