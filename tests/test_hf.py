"""hf backend on tiny random VLMs saved to disk and reloaded offline, fed real faces.

Every check compares the backend with an independent computation written here with plain
transformers calls (batch size 1, no cache, prompts spelled out by hand), because random
weights give near-identical answers for every face and an argmax alone proves little.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 notes inside transformers
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

import tiny_vlms  # noqa: E402
from vlmface.backends.base import Query, Question  # noqa: E402
from vlmface.backends.hf import HFBackend  # noqa: E402
from vlmface.errors import BackendError  # noqa: E402
from vlmface.interpret import answered, interpret_all  # noqa: E402
from vlmface.parse import parse_answer  # noqa: E402
from vlmface.registry import ModelEntry, load_registry  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FAMILIES = list(tiny_vlms.BUILDERS)
# the text each family's model really reads (chat template or raw), written out by hand
FORMATS = {
    "llava": "USER: <image>\n{q} ASSISTANT:",
    "paligemma": "{q}",  # the processor adds the image tokens and BOS itself
    "florence2": "{q}",
    "idefics3": "<|im_start|>User:<image>{q}<end_of_utterance>\nAssistant:",
    "smolvlm": "<|im_start|>User:<image>{q}<end_of_utterance>\nAssistant:",
}
RACE = Question("race", "categorical", ("White", "Black", "Asian", "Latino_Hispanic"),
                display={"Latino_Hispanic": "Latino or Hispanic"})
GENDER = Question("gender", "categorical", ("Male", "Female"))
AGE = Question("age", "numeric", ())


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_vlms")
    return {name: build(root / name) for name, build in tiny_vlms.BUILDERS.items()}


@pytest.fixture(scope="session")
def faces() -> list[Image.Image]:
    utk = sorted((DATA / "utkface" / "crop_part1").glob("*.jpg"))
    fer = sorted((DATA / "fer2013" / "PrivateTest" / "happy").glob("*.jpg"))
    if len(utk) < 3 or not fer:
        pytest.skip(f"real faces expected under {DATA} (see ../shared/data/README.md)")
    return [Image.open(p).convert("RGB") for p in (utk[0], utk[500], utk[4000], fer[0])]


@pytest.fixture(scope="session")
def reference_models(tiny_dirs):
    cache = {}

    def get(name):
        if name not in cache:
            path = tiny_dirs[name]
            cache[name] = (transformers.AutoProcessor.from_pretrained(path),
                           transformers.AutoModelForImageTextToText.from_pretrained(path).eval())
        return cache[name]
    return get


def _backend(path: Path, **options) -> HFBackend:
    return HFBackend(ModelEntry(name="tiny", backend="hf", weights=str(path)), {"device": "cpu", **options})


def _queries(faces) -> list[Query]:
    asks = [(RACE, "What is the race of the person in this image? Choose one of: White, Black, Asian, "
                   "Latino or Hispanic. Answer with one option only."),
            (GENDER, "Male or Female?"),
            (AGE, "How old is the person in this image? Answer with a number."),
            (RACE, "What is the race?")]
    return [Query(f"face{i}", face, question, prompt=prompt)
            for i, (face, (question, prompt)) in enumerate(zip(faces, asks))]


def _reference_text(processor, model, text: str, image, max_new_tokens: int) -> str:
    inputs = processor(text=[text], images=[[image]], return_tensors="pt")
    inputs.pop("labels", None)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new = out if model.config.is_encoder_decoder else out[:, inputs["input_ids"].shape[1]:]
    return processor.batch_decode(new, skip_special_tokens=True)[0].strip()


@pytest.mark.parametrize("family", FAMILIES)
def test_generate_matches_plain_transformers(family, tiny_dirs, faces, reference_models):
    backend = _backend(tiny_dirs[family], max_new_tokens=6, batch_size=4)
    queries = _queries(faces)
    raw = backend.answer(queries)
    assert all(a.label is None and a.status in ("ok", "error") for a in raw)  # backends never parse
    answers = interpret_all(raw, [q.question for q in queries])
    processor, model = reference_models(family)
    for query, answer in zip(queries, answers):
        expected = _reference_text(processor, model, FORMATS[family].format(q=query.prompt), query.image, 6)
        assert answer.raw == expected
        parsed = parse_answer(expected, query.question)
        assert (answer.status, answer.label) == (parsed.status, parsed.label)
        assert answer.status in ("ok", "invalid", "refused")


@pytest.mark.parametrize("family", ["llava", "paligemma", "idefics3"])
def test_left_padded_batches_equal_batch_size_one(family, tiny_dirs, faces):
    queries = _queries(faces)
    batched = _backend(tiny_dirs[family], max_new_tokens=6, batch_size=4).answer(queries)
    single = _backend(tiny_dirs[family], max_new_tokens=6, batch_size=1).answer(queries)
    assert [a.raw for a in batched] == [a.raw for a in single]
    assert len({len(FORMATS[family].format(q=q.prompt)) for q in queries}) > 1  # padding really happened


def _reference_logliks(family, processor, model, text, image, names) -> list[float]:
    inputs = processor(text=[text], images=[[image]], return_tensors="pt")
    inputs.pop("labels", None)
    ids = inputs.pop("input_ids")
    inputs.pop("attention_mask")
    token_types = inputs.pop("token_type_ids", None)
    scores = []
    for name in names:
        cont = torch.tensor([processor.tokenizer(name, add_special_tokens=False)["input_ids"]])
        n = cont.shape[1]
        with torch.no_grad():
            if model.config.is_encoder_decoder:
                prefix = torch.tensor([[model.generation_config.decoder_start_token_id,
                                        model.generation_config.forced_bos_token_id]])
                decoder = torch.cat([prefix, cont], dim=1)
                logits = model(input_ids=ids, pixel_values=inputs["pixel_values"],
                               decoder_input_ids=decoder[:, :-1]).logits[0, 1:]
            else:
                full = torch.cat([ids, cont], dim=1)
                extra = {}
                if token_types is not None:  # PaliGemma: the answer is the causal suffix
                    extra["token_type_ids"] = torch.cat([token_types, torch.ones_like(cont)], dim=1)
                logits = model(input_ids=full, attention_mask=torch.ones_like(full), **inputs,
                               **extra).logits[0, ids.shape[1] - 1:ids.shape[1] - 1 + n]
        logp = logits.float().log_softmax(-1)
        scores.append(sum(logp[t, cont[0, t]].item() for t in range(n)))
    return scores


@pytest.mark.parametrize("family", FAMILIES)
def test_choice_probs_match_independent_loglik(family, tiny_dirs, faces, reference_models):
    backend = _backend(tiny_dirs[family], mode="choice")
    queries = [q for q in _queries(faces) if q.question.labels]
    answers = answered(backend, queries)
    processor, model = reference_models(family)
    for query, answer in zip(queries, answers):
        question = query.question
        scores = _reference_logliks(family, processor, model, FORMATS[family].format(q=query.prompt),
                                    query.image, question.choices)
        top = max(scores)
        total = sum(math.exp(s - top) for s in scores)
        expected = {label: math.exp(s - top) / total for label, s in zip(question.labels, scores)}
        assert answer.status == "ok" and answer.label == max(expected, key=expected.get)
        assert answer.probs.keys() == expected.keys()
        for label in expected:
            assert answer.probs[label] == pytest.approx(expected[label], abs=1e-5)
        assert sum(answer.probs.values()) == pytest.approx(1.0, abs=1e-9)
        for label, score in zip(question.labels, scores):
            assert answer.extra["loglik"][label] == pytest.approx(score, abs=1e-4)


def test_choice_score_mean_divides_by_token_count(tiny_dirs, faces):
    backend = _backend(tiny_dirs["llava"], mode="choice", choice_score="mean")
    query = _queries(faces)[0]
    answer = answered(backend, [query])[0]
    lengths = [answer.extra["n_tokens"][label] for label in query.question.labels]
    assert lengths == [len(c) for c in backend.continuations(query.question)]
    assert len(set(lengths)) > 1  # "Latino or Hispanic" is longer than "White"
    scores = [answer.extra["loglik"][label] / n for label, n in zip(query.question.labels, lengths)]
    top = max(scores)
    weights = [math.exp(s - top) for s in scores]
    for label, weight in zip(query.question.labels, weights):
        assert answer.probs[label] == pytest.approx(weight / sum(weights), abs=1e-9)


def test_choice_mode_refuses_numeric_questions(tiny_dirs, faces):
    backend = _backend(tiny_dirs["llava"], mode="choice")
    assert "numeric" in backend.unsupported_reason(AGE)
    assert backend.unsupported_reason(RACE) is None
    answer = backend.answer([Query("a", faces[0], AGE, prompt="How old?")])[0]
    assert answer.status == "error"


def test_one_bad_image_does_not_sink_the_batch(tiny_dirs, faces):
    backend = _backend(tiny_dirs["llava"], max_new_tokens=3, batch_size=4)
    queries = _queries(faces)
    queries[1].image = None
    answers = backend.answer(queries)
    assert [a.status == "error" for a in answers] == [False, True, False, False]


def test_template_header_chooses_raw_prompt_and_prefix(tiny_dirs, faces):
    from vlmface.prompts import load_template

    backend = _backend(tiny_dirs["llava"], prompt_prefix="answer en ")
    raw = Question("race", "categorical", RACE.labels, RACE.display, template=load_template("aldahoul_llava"))
    # the verbatim paper prompt: its header sets chat_format raw and an empty prefix
    assert backend.format_prompt(Query("a", faces[0], raw, prompt="[INST] <image> Q? [/INST]")) == \
        "[INST] <image> Q? [/INST]"
    assert backend.format_prompt(Query("a", faces[0], RACE, prompt="Q?")) == "USER: <image>\nanswer en Q? ASSISTANT:"
    paligemma = _backend(tiny_dirs["paligemma"])
    assert paligemma.format_prompt(Query("a", faces[0], RACE, prompt="Q?")) == "<image>Q?"


def test_prompt_rendered_from_template_when_runner_gave_none(tiny_dirs, faces):
    from vlmface.prompts import load_template

    question = Question("race", "categorical", RACE.labels, RACE.display, template=load_template("vlm_question"))
    backend = _backend(tiny_dirs["llava"])
    text = backend.format_prompt(Query("a", faces[0], question))
    assert "Choose one of: White, Black, Asian, Latino or Hispanic." in text
    assert backend.max_new_tokens([Query("a", faces[0], question)]) == 24  # from the template header


def test_identity_and_prepare(tiny_dirs):
    backend = _backend(tiny_dirs["paligemma"], mode="choice")
    identity = backend.identity()
    assert identity["model_type"] == "paligemma" and identity["mode"] == "choice" and identity["dtype"] == "float32"
    facts = backend.prepare([RACE])
    assert facts["device"] == "cpu" and facts["has_chat_template"] is False


def test_offline_hub_id_says_what_to_do():
    with pytest.raises(BackendError) as err:
        HFBackend(ModelEntry(name="x", backend="hf", weights="google/paligemma-3b-mix-224"), {})
    message = str(err.value)
    assert "hf download google/paligemma-3b-mix-224" in message and "local directory" in message


def test_missing_local_dir_is_named(tmp_path):
    with pytest.raises(BackendError, match="does not exist"):
        HFBackend(ModelEntry(name="x", backend="hf", weights=str(tmp_path / "nope")), {})


def test_trust_remote_code_only_from_the_registry(monkeypatch, tiny_dirs):
    import vlmface.backends.hf as hf

    seen = {}
    real = hf.load

    def spy(weights, **kwargs):
        seen.update(kwargs)
        return real(weights, **{**kwargs, "trust_remote_code": False})

    monkeypatch.setattr(hf, "load", spy)
    with pytest.raises(BackendError, match="the hf backend has no option 'trust_remote_code'"):
        HFBackend(ModelEntry(name="x", backend="hf", weights=str(tiny_dirs["llava"])), {"trust_remote_code": True})
    assert seen == {}
    HFBackend(ModelEntry(name="x", backend="hf", weights=str(tiny_dirs["llava"]), trust_remote_code=True), {})
    assert seen["trust_remote_code"] is True


def test_unknown_mode_and_dtype_are_errors(tiny_dirs):
    with pytest.raises(BackendError, match="unknown mode"):
        _backend(tiny_dirs["llava"], mode="vote")
    with pytest.raises(BackendError, match="unknown dtype"):
        _backend(tiny_dirs["llava"], dtype="int3")


def test_device_and_dtype_choice():
    from vlmface.backends.hf_loading import pick_device, pick_dtype

    cpu = torch.device("cpu")
    assert pick_device("cpu") == cpu
    assert pick_dtype(None, cpu) == torch.float32
    assert pick_dtype("bf16", cpu) == torch.bfloat16 and pick_dtype("fp16", cpu) == torch.float16


def test_registry_has_the_generative_models():
    registry = load_registry()
    for alias in ("paligemma", "paligemma-pt", "paligemma2", "llava-1.5-7b", "llava-next-mistral-7b",
                  "florence2-base", "florence2-large", "smolvlm", "idefics3", "qwen2.5-vl-3b",
                  "qwen2.5-vl-7b", "gemma-3-4b"):
        entry = registry[alias]
        assert entry.backend == "hf" and entry.weights and not entry.trust_remote_code
    assert registry["paligemma-pt"].weights == "google/paligemma-3b-pt-224"
    assert registry["llava-next-mistral-7b"].weights == "llava-hf/llava-v1.6-mistral-7b-hf"
