"""`choice` on the api backend: label log-likelihoods from the API's top_logprobs, against a real
HTTP server on 127.0.0.1 (tests/chat_server.py) and real faces."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from vlmface.backends.api import APIBackend
from vlmface.backends.api_request import ImageEncoding, jpeg_data_url
from vlmface.backends.base import Query, Question
from vlmface.errors import BackendError
from vlmface.interpret import answered
from vlmface.prompts import load_template
from vlmface.registry import resolve_model

from chat_server import ChatServer, fake_key, first_token_logprobs

KEY_ENV = "VLMFACE_TEST_KEY"
TEMPLATE = load_template("vlm_question")
GENDER = Question(attribute="gender", kind="categorical", labels=("Male", "Female"), template=TEMPLATE,
                  task="utkface")
RACE = Question(attribute="race", kind="categorical", labels=("White", "Black", "Latino_Hispanic"),
                display={"Latino_Hispanic": "Latino or Hispanic"}, template=TEMPLATE, task="fairface")
AGE = Question(attribute="age", kind="numeric", labels=(), template=TEMPLATE, task="utkface")


@pytest.fixture(scope="module")
def faces(utkface_dir) -> list[Image.Image]:
    return [Image.open(path).convert("RGB") for path in sorted(utkface_dir.glob("*.jpg"))[:5]]


@pytest.fixture
def backend_for(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, fake_key())
    made: list[APIBackend] = []

    def make(url: str, **options) -> APIBackend:
        backend = APIBackend(resolve_model("api:test-model"),
                             {"base_url": url, "api_key_env": KEY_ENV, "cache_dir": tmp_path / "cache",
                              "timeout": 2, "max_retries": 0, "mode": "choice", **options})
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def _queries(images, question):
    prompt = TEMPLATE.render_question(attribute=question.attribute, choices=question.choices,
                                      labels=list(question.labels), task=question.task, meta={})
    return [Query(f"s{i}", image, question, prompt=prompt) for i, image in enumerate(images)]


def test_choice_probabilities_are_the_softmax_of_the_label_logprobs(backend_for, faces):
    with ChatServer() as server:
        backend = backend_for(server.url)
        queries = _queries(faces, GENDER)
        answers = answered(backend, queries)
        bodies = server.prompts
    assert len(bodies) == len(faces)
    for query, answer in zip(queries, answers):
        top = dict(first_token_logprobs(query.prompt, jpeg_data_url(query.image, ImageEncoding()), 20))
        weights = {label: math.exp(top[label]) for label in GENDER.labels}
        expected = {label: w / sum(weights.values()) for label, w in weights.items()}
        assert answer.status == "ok" and answer.label == max(expected, key=expected.get)
        assert answer.probs == pytest.approx(expected, abs=1e-12)
        assert answer.extra["loglik"] == pytest.approx({label: top[label] for label in GENDER.labels})
    identity = backend.identity()
    assert (identity["mode"], identity["choice_score"]) == ("choice", "sum")


def test_request_asks_for_one_token_and_its_top_logprobs(backend_for, faces, monkeypatch):
    sent = []
    with ChatServer(plan=lambda n, body: sent.append(body) and None) as server:
        backend_for(server.url).answer(_queries(faces[:1], GENDER))
    assert (sent[0]["max_tokens"], sent[0]["logprobs"], sent[0]["top_logprobs"]) == (1, True, 20)


def test_a_multi_token_label_is_an_error_not_a_guess(backend_for, faces):
    with ChatServer() as server:
        answers = answered(backend_for(server.url), _queries(faces[:2], RACE))
    assert [a.status for a in answers] == ["error", "error"]
    assert "'Latino or Hispanic'" in answers[0].raw and "several tokens" in answers[0].raw


def test_a_provider_without_logprobs_stops_the_run_with_the_reason(backend_for, faces):
    with ChatServer(plan=lambda n, body: "no_logprobs") as server:
        backend = backend_for(server.url)
        with pytest.raises(BackendError, match="needs token log-probabilities.*--mode generate"):
            backend.answer(_queries(faces[:1], GENDER))


def test_numeric_attributes_and_unknown_modes_are_refused(backend_for):
    with ChatServer() as server:
        backend = backend_for(server.url)
        assert "numeric" in backend.unsupported_reason(AGE) and backend.unsupported_reason(GENDER) is None
        with pytest.raises(BackendError, match="modes generate and choice"):
            backend_for(server.url, mode="constrained")
