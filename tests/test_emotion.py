"""baseline-emotion: the fer package's bundled TFLite expression model, on real FER2013 faces."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from vlmface.backends.base import Query
from vlmface.backends.emotion import MODEL_LABELS, EmotionBackend, bundled_model_path, label_map, preprocess
from vlmface.registry import resolve_model
from vlmface.runner import EvalConfig, build_questions, evaluate
from vlmface.tasks import load_task


def _faces(fer_dir, per_class=2):
    return [path for label in sorted(p.name for p in fer_dir.iterdir())
            for path in sorted((fer_dir / label).glob("*.jpg"))[:per_class]]


def _question(task):
    spec = load_task(task)
    return build_questions(spec, "none", None, ["emotion"])[0]


def test_probabilities_equal_a_direct_litert_call(fer_dir):
    from ai_edge_litert.interpreter import Interpreter

    faces = _faces(fer_dir)
    images = [Image.open(p).convert("RGB") for p in faces]
    pixels = np.stack([preprocess(im) for im in images])
    assert pixels.shape == (len(faces), 64, 64, 1) and pixels.min() >= -1 and pixels.max() <= 1
    gray = np.asarray(images[0].convert("L").resize((64, 64), Image.BILINEAR), dtype=np.float32)
    np.testing.assert_allclose(pixels[0, :, :, 0], (gray / 255 - 0.5) * 2, atol=1e-7)  # fer's scaling

    direct = Interpreter(model_path=str(bundled_model_path()))  # one face at a time, as fer runs it
    direct.allocate_tensors()
    expected = []
    for face in pixels:
        direct.set_tensor(direct.get_input_details()[0]["index"], face[None])
        direct.invoke()
        expected.append(direct.get_tensor(direct.get_output_details()[0]["index"])[0].copy())
    backend = EmotionBackend(resolve_model("baseline-emotion"))
    question = _question("fer2013")
    answers = backend.answer([Query(sample_id=str(p), image=im, question=question)
                              for p, im in zip(faces, images)])  # one batch
    for answer, row in zip(answers, expected):
        got = [answer.probs[label] for label in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")]
        np.testing.assert_allclose(got, row, atol=1e-6)
        assert answer.label == max(answer.probs, key=answer.probs.get)
    assert len({a.label for a in answers}) >= 3  # a real model: not one answer for every face


def test_labels_are_mapped_by_name():
    fer = _question("fer2013")
    assert {label: MODEL_LABELS[i] for label, i in label_map(fer).items()} == {
        label: label for label in fer.labels}
    affectnet = _question("affectnet")
    mapped = {label: MODEL_LABELS[i] for label, i in label_map(affectnet).items()}
    assert mapped["anger"] == "angry" and mapped["neutral"] == "neutral" and "contempt" not in mapped
    assert len(mapped) == 7
    backend = EmotionBackend(resolve_model("baseline-emotion"))
    assert backend.prepare([affectnet])["never_predicted_labels"] == {"emotion": ["contempt"]}
    assert backend.prepare([fer])["never_predicted_labels"] == {}
    answer = backend._answer(np.full(7, 1 / 7, dtype=np.float32), affectnet)
    assert answer.probs["contempt"] == 0.0 and answer.label != "contempt"


def test_eval_on_real_fer2013_faces(fer_dir, tmp_path):
    result = evaluate(EvalConfig(task="fer2013", model="baseline-emotion", data_dir=fer_dir, limit=70,
                                 out=tmp_path, progress=False))
    records = [json.loads(line) for line in result.predictions_path.read_text().splitlines()]
    assert len(records) == 70 and all(r["status"] == "ok" for r in records)
    assert all(abs(sum(r["probs"].values()) - 1) < 1e-4 for r in records)
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["model_identity"]["weights"] == "fer/data/emotion_model_quantized.tflite"
    assert len(run["model_identity"]["weights_sha256"]) == 64
    accuracy = result.metrics["attributes"]["emotion"]["overall"]["accuracy"]
    hits = sum(r["label"] == r["truth"] for r in records) / len(records)
    assert hits > 0.35  # chance is 1/7; the full private test gives 0.584
    assert abs(accuracy - hits) < 1e-9
