"""The one interpretation step: every backend returns raw outputs, and vlmface.interpret (called by
the Asker, the runner's only path to predictions) turns them into labels, for every backend alike."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
from PIL import Image

from vlmface.asking import Asker
from vlmface.backends.base import Answer, Question
from vlmface.data import Sample
from vlmface.interpret import interpret, reinterpretable
from vlmface.decode import DecodedSample
from vlmface.prompts import load_template
from vlmface.registry import ModelEntry
from vlmface.vocabulary import load_vocabulary

from test_vllm import fake_vllm  # noqa: F401,E402  (the fixture, for the vllm backend)

REPO = Path(__file__).resolve().parents[1]
FACES = REPO.parent / "shared" / "data" / "utkface" / "crop_part1"
VOCAB = load_vocabulary("faces")
QUESTION_TEMPLATE = load_template("vlm_question")
GENDER = Question("gender", "categorical", ("male", "female"), template=QUESTION_TEMPLATE, task="utkface",
                  vocabulary=VOCAB)
RACE = Question("race", "categorical", ("White", "Black", "Latino_Hispanic"),
                display={"Latino_Hispanic": "Latino or Hispanic"}, template=QUESTION_TEMPLATE, task="utkface",
                vocabulary=VOCAB)
AGE5 = Question("age5", "ordinal", ("0-9", "10-19", "20-39", "40-59", "60+"), template=QUESTION_TEMPLATE,
                bins=(("0-9", 0, 10), ("10-19", 10, 20), ("20-39", 20, 40), ("40-59", 40, 60),
                      ("60+", 60, math.inf)), task="utkface", vocabulary=VOCAB)
AGE = Question("age", "numeric", (), template=QUESTION_TEMPLATE, task="utkface")


# ----- no backend interprets --------------------------------------------------------------
def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


def test_no_backend_module_imports_the_parser_or_the_interpretation_step():
    modules = sorted((REPO / "vlmface" / "backends").glob("*.py"))
    assert len(modules) > 10
    for module in modules:
        imported = _imported_modules(module)
        banned = {name for name in imported if name.startswith(("vlmface.parse", "vlmface.interpret"))}
        assert not banned, f"{module.name} imports {banned}: backends return raw outputs only"


# ----- the step itself ------------------------------------------------------------------
def test_text_is_parsed_and_the_backend_extra_is_kept():
    got = interpret(Answer(label=None, raw="She looks like a woman.", extra={"source": "api"}), GENDER)
    assert (got.label, got.status, got.extra) == ("female", "ok", {"parse": "text", "source": "api"})
    refused = interpret(Answer(label=None, raw="I'm sorry, I cannot determine that."), GENDER)
    assert (refused.label, refused.status) == (None, "refused")


def test_scores_give_the_argmax_and_the_softmax():
    scores = {"White": -2.0, "Black": -0.5, "Latino_Hispanic": -3.0}
    got = interpret(Answer(label=None, scores=scores), RACE)
    assert (got.label, got.status, got.scores) == ("Black", "ok", scores)
    total = sum(math.exp(s) for s in scores.values())
    assert got.probs == pytest.approx({k: math.exp(v) / total for k, v in scores.items()}, abs=1e-12)
    tie = interpret(Answer(label=None, scores={"White": -1.0, "Black": -1.0, "Latino_Hispanic": -4.0}), RACE)
    assert tie.label == "White"  # ties: the first label in spec order
    own = interpret(Answer(label=None, scores=scores, probs={"White": 0.2, "Black": 0.7, "Latino_Hispanic": 0.1}),
                    RACE)
    assert own.probs["Black"] == 0.7  # a zero-shot backend's own probabilities are kept
    wrong = interpret(Answer(label=None, scores={"male": 0.0, "female": -1.0}), RACE)
    assert wrong.status == "invalid" and "not the labels" in wrong.extra["parse"]


def test_values_are_numbers_or_bins_and_labels_are_checked():
    assert interpret(Answer(label=None, value=34.0), AGE).label == 34.0
    assert interpret(Answer(label=None, value=34.0), AGE5).label == "20-39"
    assert interpret(Answer(label=None, value=-3.0), AGE5).status == "invalid"
    outside = interpret(Answer(label="Martian"), RACE)
    assert (outside.status, outside.extra) == ("invalid", {"unknown_label": "Martian"})
    for final in (Answer.error("boom"), Answer(label=None, status="refused", raw="policy")):
        assert interpret(final, RACE) is final


def test_constrained_decoding_takes_the_display_name():
    got = interpret(Answer(label=None, raw="Latino or Hispanic", extra={"constrained": True}), RACE)
    assert (got.label, got.extra) == ("Latino_Hispanic", {"parse": "choice"})


def test_saved_records_give_back_their_raw_answer():
    text = interpret(Answer(label=None, raw="a man", extra={"source": "cache"}), GENDER)
    record = {"raw": text.raw, "extra": text.extra, "status": text.status}
    redo = reinterpretable(record)
    assert (redo.raw, redo.extra, redo.label) == ("a man", {"source": "cache"}, None)
    assert interpret(redo, GENDER) == text
    assert reinterpretable({"raw": "box", "extra": None, "status": "ok"}) is None  # a classifier's label
    assert reinterpretable({"raw": "boom", "extra": None, "status": "error"}) is None


# ----- every backend, through the Asker ---------------------------------------------------
@pytest.fixture(scope="module")
def faces() -> list[Image.Image]:
    files = sorted(FACES.glob("*.jpg"))[::1000][:3]
    assert len(files) == 3, f"real faces expected at {FACES}"
    return [Image.open(f).convert("RGB") for f in files]


class Recording:
    """Wraps a backend and keeps what it returned, so the test can redo the interpretation."""

    def __init__(self, backend):
        self.backend, self.raw, self.queries = backend, [], []

    def answer(self, queries):
        answers = self.backend.answer(queries)
        self.queries += queries
        self.raw += answers
        return answers


def _baseline(tmp_path):
    from vlmface.backends.baseline import BaselineBackend

    return BaselineBackend(ModelEntry(name="baseline", backend="baseline")), "none", [GENDER, AGE5, AGE]


def _api(tmp_path):
    from chat_server import ChatServer

    from vlmface.backends.api import APIBackend

    server = ChatServer().__enter__()
    backend = APIBackend(ModelEntry(name="api", backend="api", weights="served-test-model"),
                         {"base_url": server.url, "api_key_optional": True, "api_key_env": "VLMFACE_NO_KEY",
                          "cache_dir": tmp_path})
    backend.server = server
    return backend, "question", [GENDER, RACE, AGE]


def _hf(mode):
    def build(tmp_path):
        import tiny_vlms

        from vlmface.backends.hf import HFBackend

        directory = tiny_vlms.build_llava(tmp_path / "llava")
        backend = HFBackend(ModelEntry(name="tiny", backend="hf", weights=str(directory)),
                            {"device": "cpu", "max_new_tokens": 4, "mode": mode})
        return backend, "question", [GENDER, RACE] + ([AGE] if mode == "generate" else [])
    return build


def _vllm(tmp_path):
    import tiny_vlms

    from vlmface.backends.vllm import VLLMBackend

    directory = tiny_vlms.to_hub_llava_layout(tiny_vlms.build_llava(tmp_path / "llava"))
    return VLLMBackend(ModelEntry(name="tiny", backend="vllm", weights=str(directory)), {"mode": "choice"}), \
        "question", [RACE, GENDER]


def _clip(tmp_path):
    from tiny_models import build_tiny_open_clip

    from vlmface.backends.clip import ClipBackend

    directory = build_tiny_open_clip(tmp_path / "clip")
    backend = ClipBackend(ModelEntry(name="clip", backend="clip", weights=f"local-dir:{directory}"),
                          {"device": "cpu", "cache_dir": tmp_path})
    clip_texts = load_template("clip_photo")
    return backend, "class_texts", [Question(q.attribute, q.kind, q.labels, q.display, template=clip_texts,
                                             task="utkface") for q in (GENDER, RACE)]


BACKENDS = {"baseline": _baseline, "api": _api, "hf-generate": _hf("generate"), "hf-choice": _hf("choice"),
            "vllm-choice": _vllm, "clip": _clip}


@pytest.mark.parametrize("name", list(BACKENDS))
def test_every_backend_answers_raw_and_the_asker_interprets(name, faces, tmp_path, request, one_torch_thread):
    if name.startswith("vllm"):
        request.getfixturevalue("fake_vllm")  # the engine faked (tests/test_vllm.py); prompts and parsing real
    backend, style, questions = BACKENDS[name](tmp_path)
    backend.prepare(questions)
    recording = Recording(backend)
    samples = [Sample(id=f"s{i}", image=f"face{i}.jpg", labels={"gender": "male", "race": "White",
                                                                   "age5": "20-39", "age": 30.0})
               for i in range(len(faces))]
    batch = [DecodedSample(sample=s, image=face) for s, face in zip(samples, faces)]
    try:
        predictions = Asker(style, (), name).ask(recording, batch, {s.id: questions for s in samples})
    finally:
        backend.close()
        if hasattr(backend, "server"):
            backend.server.__exit__(None, None, None)
    assert len(predictions) == len(samples) * len(questions)
    generative = name not in ("baseline",)
    for raw, query, prediction in zip(recording.raw, recording.queries, predictions):
        if generative and raw.status == "ok":
            assert raw.label is None, f"{name} returned a label: interpretation belongs to vlmface.interpret"
        expected = interpret(raw, query.question)
        assert (prediction.label, prediction.status, prediction.raw, prediction.scores) == \
            (expected.label, expected.status, expected.raw, expected.scores)
    assert any(p.status == "ok" for p in predictions)
    if name in ("hf-choice", "clip"):
        assert all(p.scores is not None and p.label == max(p.scores, key=p.scores.get) for p in predictions)
