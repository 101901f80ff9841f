"""The clip backend on tiny offline models and real faces: loading, zero-shot math checked
against independent computations written directly against open_clip / transformers,
class texts in run.json, bad samples, unsupported questions, offline errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tiny_models import build_tiny_hf_clip, build_tiny_hf_siglip, build_tiny_hf_siglip2, build_tiny_open_clip
from vlmface.backends.base import Query, Question
from vlmface.backends.clip import ClipBackend
from vlmface.backends.clip_models import parse_spec
from vlmface.errors import BackendError
from vlmface.interpret import answered
from vlmface.prompts import load_template
from vlmface.registry import ModelEntry, load_registry

FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface" / "crop_part1"
TOL = 1e-5

GENDER = {"labels": ("Male", "Female"), "display": {"Male": "male", "Female": "female"}}
RACE = {"labels": ("White", "Black", "Asian", "Indian", "Others"),
        "display": {"Others": "Latino, Hispanic or Middle Eastern"}}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Tiny models run fastest on one thread (see conftest.one_torch_thread)."""


# ----- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def faces() -> list[Image.Image]:
    assert FACES.is_dir(), f"real faces expected at {FACES} (see ../shared/data/README.md)"
    files = sorted(FACES.glob("*.jpg"))[::397][:24]
    return [Image.open(f).convert("RGB") for f in files]


@pytest.fixture(scope="session")
def open_clip_dir(tmp_path_factory) -> Path:
    return build_tiny_open_clip(tmp_path_factory.mktemp("open_clip"))


@pytest.fixture(scope="session")
def open_clip_sigmoid_dir(tmp_path_factory) -> Path:
    return build_tiny_open_clip(tmp_path_factory.mktemp("open_clip_sig"), seed=1, logit_scale=10.0,
                                logit_bias=-2.0)


@pytest.fixture(scope="session")
def hf_clip_dir(tmp_path_factory) -> Path:
    return build_tiny_hf_clip(tmp_path_factory.mktemp("hf_clip"))


@pytest.fixture(scope="session")
def hf_siglip_dir(tmp_path_factory) -> Path:
    return build_tiny_hf_siglip(tmp_path_factory.mktemp("hf_siglip"), logit_scale=10.0, logit_bias=-2.0)


@pytest.fixture(scope="session")
def hf_siglip2_dir(tmp_path_factory) -> Path:
    return build_tiny_hf_siglip2(tmp_path_factory.mktemp("hf_siglip2"))


def question(attribute: str, spec: dict, template: str = "clip_photo", task: str = "utkface") -> Question:
    return Question(attribute=attribute, kind="categorical", labels=spec["labels"], display=spec["display"],
                    template=load_template(template), task=task)


def backend(weights: str, **options) -> ClipBackend:
    return ClipBackend(ModelEntry(name="test", backend="clip", weights=weights),
                       {"device": "cpu", "batch_size": 8, **options})


def queries_for(images, questions) -> list[Query]:
    return [Query(sample_id=str(i), image=image, question=q) for i, image in enumerate(images) for q in questions]


def probs_matrix(answers, labels) -> np.ndarray:
    return np.array([[a.probs[label] for label in labels] for a in answers])


# ----- independent computations ----------------------------------------------------------------
def _class_matrix(encode, texts_per_label: list[list[str]]) -> torch.Tensor:
    rows = []
    for texts in texts_per_label:
        mean = F.normalize(encode(texts), dim=-1).mean(dim=0)
        rows.append(mean / mean.norm())
    return torch.stack(rows)


def _to_probs(logits: torch.Tensor, sigmoid: bool) -> np.ndarray:
    if sigmoid:
        s = torch.sigmoid(logits.double())
        return (s / s.sum(dim=-1, keepdim=True)).numpy()
    return logits.double().softmax(dim=-1).numpy()


@torch.no_grad()
def reference_open_clip(model_dir: Path, images, texts_per_label) -> np.ndarray:
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{model_dir}")
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{model_dir}")
    image = F.normalize(model.encode_image(torch.stack([preprocess(im) for im in images])), dim=-1)
    classes = _class_matrix(lambda t: model.encode_text(tokenizer(t)), texts_per_label)
    logits = model.logit_scale.exp() * image @ classes.T
    if model.logit_bias is not None:
        logits = logits + model.logit_bias
    return _to_probs(logits, sigmoid=model.logit_bias is not None)


@torch.no_grad()
def reference_hf(model_dir: Path, images, texts_per_label, text_kwargs) -> np.ndarray:
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    pixels = processor(images=images, return_tensors="pt")
    image = F.normalize(model.get_image_features(**pixels).pooler_output, dim=-1)

    def encode(texts):
        return model.get_text_features(**processor(text=texts, return_tensors="pt", **text_kwargs)).pooler_output

    classes = _class_matrix(encode, texts_per_label)
    logits = model.logit_scale.exp() * image @ classes.T
    sigmoid = hasattr(model, "logit_bias")
    if sigmoid:
        logits = logits + model.logit_bias
    return _to_probs(logits, sigmoid)


@torch.no_grad()
def reference_hf_forward(model_dir: Path, images, texts: list[str], text_kwargs) -> np.ndarray:
    """One text per label: the model's own forward() gives the logits."""
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    out = model(**processor(text=texts, images=images, return_tensors="pt", **text_kwargs))
    return _to_probs(out.logits_per_image, sigmoid=hasattr(model, "logit_bias"))


def _texts(info: dict, attribute: str, labels) -> list[list[str]]:
    return [info["class_texts"][attribute][label] for label in labels]


# ----- agreement with independent computations ------------------------------------------------
@pytest.mark.parametrize("fixture", ["open_clip_dir", "open_clip_sigmoid_dir"])
def test_open_clip_probs_match_independent_computation(request, fixture, faces):
    model_dir = request.getfixturevalue(fixture)
    questions = [question("gender", GENDER), question("race5", RACE)]
    clip = backend(f"local-dir:{model_dir}")
    info = clip.prepare(questions)
    answers = answered(clip, queries_for(faces, questions))
    for k, (q, spec) in enumerate(zip(questions, (GENDER, RACE))):
        got = probs_matrix(answers[k::2], spec["labels"])
        want = reference_open_clip(model_dir, faces, _texts(info, q.attribute, spec["labels"]))
        np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
        assert got.std(axis=0).max() > 1e-3, "a real test needs probabilities that differ between faces"
        assert [a.label for a in answers[k::2]] == [spec["labels"][i] for i in want.argmax(axis=1)]
    sigmoid = fixture == "open_clip_sigmoid_dir"
    assert (answers[0].extra is not None) == sigmoid
    assert ("sigmoid" in info["scoring"]) == sigmoid


def test_hf_clip_probs_match_independent_computation(hf_clip_dir, faces):
    questions = [question("gender", GENDER), question("race5", RACE)]
    clip = backend(f"local-dir:{hf_clip_dir}")
    info = clip.prepare(questions)
    assert info["model"]["impl"] == "transformers"
    answers = answered(clip, queries_for(faces, questions))
    for k, (q, spec) in enumerate(zip(questions, (GENDER, RACE))):
        got = probs_matrix(answers[k::2], spec["labels"])
        want = reference_hf(hf_clip_dir, faces, _texts(info, q.attribute, spec["labels"]), {"padding": True})
        np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
        assert got.std(axis=0).max() > 1e-3


@pytest.mark.parametrize("fixture,text_kwargs", [
    ("hf_clip_dir", {"padding": True}),
    ("hf_siglip_dir", {"padding": "max_length", "max_length": 64}),
    ("hf_siglip2_dir", {"padding": "max_length", "max_length": 64}),
])
def test_single_template_matches_the_models_own_forward(request, fixture, text_kwargs, faces):
    model_dir = request.getfixturevalue(fixture)
    q = question("gender", GENDER, template="clip_photo_single")
    clip = backend(f"hf:{model_dir}")
    info = clip.prepare([q])
    assert info["class_texts"]["gender"] == {"Male": ["a photo of a male person."],
                                             "Female": ["a photo of a female person."]}
    answers = answered(clip, queries_for(faces, [q]))
    want = reference_hf_forward(model_dir, faces, ["a photo of a male person.", "a photo of a female person."],
                                text_kwargs)
    np.testing.assert_allclose(probs_matrix(answers, GENDER["labels"]), want, atol=TOL, rtol=0)
    if fixture != "hf_clip_dir":
        from transformers import AutoModel

        model = AutoModel.from_pretrained(model_dir)
        assert answers[0].extra["sigmoid"] and info["model"]["logit_bias"] == pytest.approx(
            float(model.logit_bias.detach()), abs=1e-6)


def test_siglip_multi_template_matches_independent_computation(hf_siglip_dir, faces):
    q = question("race5", RACE)
    clip = backend(f"hf:{hf_siglip_dir}")
    info = clip.prepare([q])
    answers = answered(clip, queries_for(faces, [q]))
    want = reference_hf(hf_siglip_dir, faces, _texts(info, "race5", RACE["labels"]),
                        {"padding": "max_length", "max_length": 64, "truncation": True})
    got = probs_matrix(answers, RACE["labels"])
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-9)
    assert got.std(axis=0).max() > 1e-3
    raw = np.array([[a.extra["sigmoid"][label] for label in RACE["labels"]] for a in answers])
    assert 0.01 < raw.mean() < 0.99, "sigmoids should not be saturated in this test"
    np.testing.assert_allclose(raw / raw.sum(axis=1, keepdims=True), got, atol=1e-9)


@pytest.mark.parametrize("fixture", ["open_clip_dir", "hf_siglip2_dir"])
def test_batch_size_does_not_change_answers(request, fixture, faces):
    model_dir = request.getfixturevalue(fixture)
    questions = [question("gender", GENDER), question("race5", RACE)]
    images = faces[:5] + [faces[5].crop((0, 0, 60, 200))]  # one odd aspect ratio (NaFlex patches)
    one = answered(backend(f"local-dir:{model_dir}", batch_size=1), queries_for(images, questions))
    many = answered(backend(f"local-dir:{model_dir}", batch_size=64), queries_for(images, questions))
    for a, b in zip(one, many):
        assert a.label == b.label
        assert a.probs == pytest.approx(b.probs, abs=1e-6)


# ----- run.json facts ----------------------------------------------------------------------------
def test_prepare_records_every_class_text_and_the_model_identity(open_clip_dir):
    q_race = question("race7", {"labels": ("White", "Latino_Hispanic", "East Asian"),
                                "display": {"Latino_Hispanic": "Latino or Hispanic"}}, task="fairface")
    clip = backend(f"local-dir:{open_clip_dir}")
    info = clip.prepare([q_race])
    json.dumps(info)  # goes into run.json as is
    texts = info["class_texts"]["race7"]
    n_templates = len(load_template("clip_photo").bodies)
    assert n_templates > 1 and all(len(v) == n_templates for v in texts.values())
    assert texts["Latino_Hispanic"][0] == "a photo of a Latino or Hispanic person."
    assert texts["East Asian"][0] == "a photo of an East Asian person."
    assert info["class_text_templates"]["race7"]["name"] == "clip_photo"
    model = info["model"]
    assert model == clip.identity()
    assert model["impl"] == "open_clip" and model["source"] == "local-dir"
    assert len(model["weights_sha256"]) == 64 and model["dtype"] == "fp32"
    assert model["logit_scale"] == pytest.approx(100.0, rel=1e-5) and model["logit_bias"] is None
    assert info["warnings"] == []


def test_labels_without_display_name_and_indistinct_texts_are_warned(open_clip_dir):
    q = Question(attribute="race", kind="categorical", labels=("Latino_Hispanic", "White", "white"),
                 display={"white": "White"}, template=load_template("clip_photo_single"))
    warnings = backend(f"local-dir:{open_clip_dir}").prepare([q])["warnings"]
    assert any("'Latino_Hispanic' has no display name" in w for w in warnings)
    assert any("'White' and 'white' have the same class texts" in w for w in warnings)


def test_each_distinct_image_is_encoded_once_per_batch(open_clip_dir, faces):
    questions = [question("gender", GENDER), question("race5", RACE)]
    clip = backend(f"local-dir:{open_clip_dir}")
    clip.prepare(questions)
    answered(clip, queries_for(faces[:5], questions) + queries_for([faces[0].copy()], questions))
    assert clip.stats()["images_encoded"] == 5  # the copy has the same pixels


# ----- questions it cannot answer, bad samples ----------------------------------------------------
def test_unsupported_questions_say_why(open_clip_dir):
    clip = backend(f"local-dir:{open_clip_dir}")
    age = Question(attribute="age", kind="numeric", labels=())
    assert "numeric" in clip.unsupported_reason(age)
    no_template = Question(attribute="gender", kind="categorical", labels=GENDER["labels"])
    assert "--prompt clip_photo" in clip.unsupported_reason(no_template)
    wrong_kind = Question(attribute="gender", kind="categorical", labels=GENDER["labels"],
                          template=load_template("vlm_question"))
    assert "--prompt clip_photo" in clip.unsupported_reason(wrong_kind)
    assert clip.unsupported_reason(question("gender", GENDER)) is None
    answers = answered(clip, [Query(sample_id="a", image=Image.new("RGB", (40, 40)), question=age)])
    assert answers[0].status == "error" and "numeric" in answers[0].raw


@pytest.mark.parametrize("fixture", ["open_clip_dir", "hf_clip_dir"])
def test_a_bad_sample_gets_an_error_answer_and_the_rest_of_the_batch_goes_on(request, fixture, faces):
    q = question("gender", GENDER)
    clip = backend(f"local-dir:{request.getfixturevalue(fixture)}")
    queries = [Query("good0", faces[0], q), Query("not-an-image", None, q),
               Query("empty", Image.new("RGB", (0, 0)), q), Query("good1", faces[1], q)]
    answers = answered(clip, queries)
    assert [a.status for a in answers] == ["ok", "error", "error", "ok"]
    assert "not-an-image" in answers[1].raw and "empty" in answers[2].raw
    assert answers[0].probs == pytest.approx(answered(clip, [Query("x", faces[0], q)])[0].probs, abs=1e-6)
    assert clip.stats()["bad_images"] == 2


# ----- specs, registry, offline errors ----------------------------------------------------------
def test_spec_forms(open_clip_dir, hf_clip_dir):
    assert parse_spec(f"local-dir:{open_clip_dir}").impl == "open_clip"
    assert parse_spec(f"local-dir:{hf_clip_dir}").impl == "transformers"
    assert parse_spec(str(hf_clip_dir)).impl == "transformers"
    assert parse_spec(f"hf:{hf_clip_dir}").source == "local-dir"
    spec = parse_spec("ViT-B-32/openai")
    assert (spec.impl, spec.source, spec.name, spec.pretrained) == ("open_clip", "builtin", "ViT-B-32", "openai")
    spec = parse_spec("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    assert (spec.impl, spec.source) == ("open_clip", "hf-hub")
    spec = parse_spec("hf:google/siglip-base-patch16-224", revision="abc")
    assert (spec.impl, spec.source, spec.revision) == ("transformers", "hub-id", "abc")
    assert parse_spec("google/siglip-base-patch16-224", impl="transformers").source == "hub-id"
    with pytest.raises(BackendError, match="give a pretrained tag.*openai"):
        parse_spec("ViT-B-32")
    with pytest.raises(BackendError, match="clip:hf:openai/clip-vit-base-patch32"):
        parse_spec("openai/clip-vit-base-patch32")
    with pytest.raises(BackendError, match="neither a pretrained tag"):
        parse_spec("ViT-B-32/no_such_tag")
    with pytest.raises(BackendError, match="no such directory"):
        parse_spec("local-dir:/no/such/dir")


def test_registry_aliases_parse():
    registry = load_registry()
    for alias in ("clip-vit-b-32", "clip-vit-l-14", "clip-vit-b-32-laion2b", "siglip-base", "siglip-so400m"):
        entry = registry[alias]
        assert entry.backend == "clip"
        parse_spec(entry.weights, impl=entry.options.get("impl"), revision=entry.revision)
    assert registry["clip-vit-b-32"].weights == "ViT-B-32/openai"
    assert parse_spec(registry["siglip-base"].weights).impl == "transformers"


@pytest.mark.parametrize("weights,fix", [
    ("hf:google/siglip-base-patch16-224", "clip:hf:DIR"),
    ("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "clip:local-dir:DIR"),
    ("ViT-B-32/openai", "hf download timm/vit_base_patch32_clip_224.openai"),
])
def test_offline_hub_ids_fail_fast_saying_what_to_do(monkeypatch, weights, fix):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BackendError) as caught:  # how fast: benchmarks/latency_bench.py
        backend(weights)
    message = str(caught.value)
    assert "download" in message and fix in message and "HF_HUB_OFFLINE" in message


def test_a_local_dir_without_weights_is_an_error_not_a_random_model(tmp_path, open_clip_dir):
    (tmp_path / "open_clip_config.json").write_text((open_clip_dir / "open_clip_config.json").read_text())
    with pytest.raises(BackendError, match="cannot load open_clip model"):
        backend(f"local-dir:{tmp_path}")
