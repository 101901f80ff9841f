"""vllm backend with the engine replaced at its boundary (no vllm install needed).

A fake `vllm` module records what the backend submits: the requests (prompt + image), the
sampling parameters and the engine arguments, and answers like a real engine would.
"""

from __future__ import annotations

import json
import math
import os
import sys
import types
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

import tiny_vlms  # noqa: E402
from vlmface.backends.base import Query, Question  # noqa: E402
from vlmface.backends.choice import label_token_ids  # noqa: E402
from vlmface.errors import BackendError  # noqa: E402
from vlmface.interpret import answered  # noqa: E402
from vlmface.registry import ModelEntry  # noqa: E402

RACE = Question("race", "categorical", ("White", "Black", "Latino_Hispanic"),
                display={"Latino_Hispanic": "Latino or Hispanic"})
AGE = Question("age", "numeric", ())


EXPANSION = 49  # image tokens the tiny LLaVA's processor makes (7 x 7 patches); checked in llava_dir
IMAGE_TOKEN: int | None = None  # set from the tiny LLaVA's config


def fake_logprob(token: int, position: int) -> float:
    return -((token % 7) + (position % 3)) / 10


class FakeParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class FakeLLM:
    instances: list[FakeLLM] = []

    def __init__(self, **kwargs):
        self.kwargs, self.calls = kwargs, []
        self.fail_on: str | None = None
        self.cached_tokens = 0  # what a prefix-cache read reports (num_cached_tokens)
        FakeLLM.instances.append(self)
        global IMAGE_TOKEN
        config = json.loads((Path(kwargs["model"]) / "config.json").read_text())
        IMAGE_TOKEN = config.get("image_token_id", config.get("image_token_index"))

    def generate(self, requests, sampling_params=None, use_tqdm=True):
        self.calls.append((list(requests), list(sampling_params)))
        if self.fail_on and any(self.fail_on in r.get("prompt", "") for r in requests):
            raise ValueError("prompt too long")
        if any(getattr(p, "prompt_logprobs", None) is not None for p in sampling_params):
            return [self._cached(self._scored(r), p) for r, p in zip(requests, sampling_params)]
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=self._reply(r, p), finish_reason="stop")])
                for r, p in zip(requests, sampling_params)]

    def _cached(self, output, params):
        """Like vLLM reading its prefix cache: the first `cached_tokens` rows hold garbage."""
        if params.skip_reading_prefix_cache or not self.cached_tokens:
            output.num_cached_tokens = 0
            return output
        output.num_cached_tokens = min(self.cached_tokens, len(output.prompt_token_ids) - 1)
        for row in range(1, output.num_cached_tokens + 1):
            output.prompt_logprobs[row] = {output.prompt_token_ids[row]: types.SimpleNamespace(logprob=123.0, rank=1)}
        return output

    @staticmethod
    def _scored(request):
        """Like vLLM with prompt_logprobs=0: the image placeholder expanded (as the processor does), a None for the first position, then {token: Logprob} for every position; the
        log-probability of token t at position i is -(t % 7 + i % 3) / 10, a known function."""
        ids = []
        for token in request["prompt_token_ids"]:
            ids += [token] * (EXPANSION if token == IMAGE_TOKEN else 1)
        logprobs = [None] + [{t: types.SimpleNamespace(logprob=fake_logprob(t, i), rank=1)}
                             for i, t in enumerate(ids) if i > 0]
        return types.SimpleNamespace(prompt_token_ids=ids, prompt_logprobs=logprobs,
                                     outputs=[types.SimpleNamespace(text="", finish_reason="length")])

    @staticmethod
    def _reply(request, params):
        if getattr(params, "structured_outputs", None) is not None:
            return params.structured_outputs.choice[-1]
        if "old" in request["prompt"]:
            return "About 30-34 years old."
        return "I'm sorry, I can't determine that." if "refuse" in request["prompt"] else "The person is Black."


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams, module.__version__ = FakeLLM, FakeParams, "0.0-fake"
    sampling = types.ModuleType("vllm.sampling_params")
    sampling.StructuredOutputsParams = FakeParams
    module.sampling_params = sampling
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)
    FakeLLM.instances.clear()
    return module


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory) -> Path:
    from transformers import AutoProcessor

    folder = tiny_vlms.to_hub_llava_layout(tiny_vlms.build_llava(tmp_path_factory.mktemp("vllm") / "llava"))
    processor = AutoProcessor.from_pretrained(folder)
    ids = processor(text=["<image>x"], images=[[Image.new("RGB", (40, 40))]])["input_ids"][0]
    assert list(ids).count(processor.image_token_id) == EXPANSION
    return folder


@pytest.fixture(scope="module")
def face() -> Image.Image:
    files = sorted((Path(__file__).resolve().parents[2] / "shared" / "data" / "utkface" / "crop_part1").glob("*.jpg"))
    if not files:
        pytest.skip("real faces expected under ../shared/data")
    return Image.open(files[0]).convert("RGB")


def _backend(path, **options):
    from vlmface.backends.vllm import VLLMBackend

    return VLLMBackend(ModelEntry(name="tiny", backend="vllm", weights=str(path)), options)


def test_all_requests_go_in_one_call_with_the_hf_prompts(fake_vllm, llava_dir, face):
    backend = _backend(llava_dir, max_new_tokens=12)
    queries = [Query(f"s{i}", face, RACE, prompt=f"What is the race? {i}") for i in range(5)]
    answers = answered(backend, queries)
    llm = FakeLLM.instances[0]
    assert len(llm.calls) == 1
    requests, params = llm.calls[0]
    assert [r["prompt"] for r in requests] == [f"USER: <image>\nWhat is the race? {i} ASSISTANT:" for i in range(5)]
    assert all(r["multi_modal_data"]["image"] is face for r in requests)
    assert all(p.temperature == 0.0 and p.max_tokens == 12 for p in params)
    assert [(a.status, a.label, a.raw) for a in answers] == [("ok", "Black", "The person is Black.")] * 5


def test_generate_mode_answers_go_through_the_parser(fake_vllm, llava_dir, face):
    backend = _backend(llava_dir)
    answers = answered(backend, [Query("a", face, RACE, prompt="refuse please"),
                                 Query("b", face, AGE, prompt="How old?")])
    assert (answers[0].status, answers[0].label) == ("refused", None)
    assert (answers[1].status, answers[1].label) == ("ok", 32.0)


def test_constrained_mode_restricts_decoding_to_the_labels(fake_vllm, llava_dir, face):
    backend = _backend(llava_dir, mode="constrained")
    answers = answered(backend, [Query("a", face, RACE, prompt="Race?")])
    params = FakeLLM.instances[0].calls[0][1][0]
    assert params.structured_outputs.choice == ["White", "Black", "Latino or Hispanic"]
    assert (answers[0].status, answers[0].label) == ("ok", "Latino_Hispanic")
    assert "numeric" in backend.unsupported_reason(AGE)
    assert backend.answer([Query("b", face, AGE, prompt="How old?")])[0].status == "error"


def _expected_probs(backend, query, rule):
    """Independently of vllm_choice: expand the image, find each label at the end, sum or average."""
    tokenizer = backend.tokenizer
    prompt = tokenizer(backend.prompts.format(query), add_special_tokens=True)["input_ids"]
    image = tokenizer.convert_tokens_to_ids("<image>")
    expanded = sum(([t] * (EXPANSION if t == image else 1) for t in prompt), [])
    scores = []
    for name in query.question.choices:
        label = tokenizer(name, add_special_tokens=False)["input_ids"]
        values = [fake_logprob(t, len(expanded) + k) for k, t in enumerate(label)]
        scores.append(sum(values) / (len(values) if rule == "mean" else 1))
    weights = [math.exp(v - max(scores)) for v in scores]
    return {label: w / sum(weights) for label, w in zip(query.question.labels, weights)}


@pytest.mark.parametrize("rule", ["sum", "mean"])
def test_choice_mode_scores_every_label_with_prompt_logprobs(fake_vllm, llava_dir, face, rule):
    global IMAGE_TOKEN
    backend = _backend(llava_dir, mode="choice", choice_score=rule)
    IMAGE_TOKEN = backend.tokenizer.convert_tokens_to_ids("<image>")
    queries = [Query("a", face, RACE, prompt="Race?"), Query("b", face, RACE, prompt="Which race is shown?")]
    answers = answered(backend, queries)
    llm = FakeLLM.instances[0]
    assert llm.kwargs["enable_prefix_caching"] is True and len(llm.calls) == 1
    requests, params = llm.calls[0]
    assert len(requests) == 6  # 2 queries x 3 labels, one engine call
    assert all((p.max_tokens, p.prompt_logprobs, p.temperature, p.detokenize, p.skip_reading_prefix_cache)
               == (1, 0, 0.0, False, False) for p in params)
    prompt = backend.tokenizer(backend.prompts.format(queries[0]))["input_ids"]
    labels = backend.tokenizer(RACE.choices, add_special_tokens=False)["input_ids"]
    assert [r["prompt_token_ids"] for r in requests[:3]] == [prompt + label for label in labels]
    assert all(r["multi_modal_data"]["image"] is face for r in requests)
    for query, answer in zip(queries, answers):
        expected = _expected_probs(backend, query, rule)
        assert answer.status == "ok" and answer.label == max(expected, key=expected.get)
        assert answer.probs == pytest.approx(expected, abs=1e-12)
        assert answer.extra["choice_score"] == rule
    assert backend.identity()["choice_score"] == rule and backend.identity()["mode"] == "choice"


def test_choice_labels_are_the_tokens_the_hf_backend_scores(fake_vllm, llava_dir):
    from vlmface.backends.hf import HFBackend

    vllm_backend = _backend(llava_dir, mode="choice", choice_prefix=" ")
    hf = HFBackend(ModelEntry(name="tiny", backend="hf", weights=str(llava_dir)),
                   {"device": "cpu", "mode": "choice", "choice_prefix": " "})
    assert hf.continuations(RACE) == label_token_ids(vllm_backend.tokenizer, RACE.choices, " ")


@pytest.mark.parametrize("cached, reruns", [(32, 0), (10_000, 6)])
def test_label_rows_read_from_the_prefix_cache_are_scored_again_without_it(fake_vllm, llava_dir, face,
                                                                           cached, reruns):
    global IMAGE_TOKEN
    backend = _backend(llava_dir, mode="choice")
    IMAGE_TOKEN = backend.tokenizer.convert_tokens_to_ids("<image>")
    backend.llm.cached_tokens = cached  # 10_000: every row up to the last one comes from the cache
    queries = [Query("a", face, RACE, prompt="Race?"), Query("b", face, RACE, prompt="Which race is shown?")]
    answers = answered(backend, queries)
    calls = backend.llm.calls
    assert len(calls) == 1 + (reruns > 0)
    if reruns:
        assert len(calls[1][0]) == reruns and all(p.skip_reading_prefix_cache for p in calls[1][1])
    for query, answer in zip(queries, answers):  # never a garbage row (logprob 123.0) in a score
        assert answer.status == "ok" and answer.probs == pytest.approx(_expected_probs(backend, query, "sum"), abs=1e-12)
    stats = backend.cache_stats.as_dict()
    assert stats["requests"] == 6 and stats["reruns"] == reruns and stats["cached_tokens"] > 0


def test_a_prompt_vllm_lays_out_differently_is_an_error(fake_vllm, llava_dir, face, monkeypatch):
    global IMAGE_TOKEN
    backend = _backend(llava_dir, mode="choice")
    IMAGE_TOKEN = backend.tokenizer.convert_tokens_to_ids("<image>")
    scored = FakeLLM._scored
    monkeypatch.setattr(FakeLLM, "_scored", staticmethod(lambda request: scored(
        {**request, "prompt_token_ids": [backend.tokenizer.bos_token_id] + request["prompt_token_ids"]})))
    answer = answered(backend, [Query("a", face, RACE, prompt="Race?")])[0]
    assert answer.status == "error" and "laid out the prompt differently" in answer.raw and "token 0" in answer.raw


def test_engine_prompt_undoes_the_processors_image_layout():
    from vlmface.backends.vllm_choice import engine_prompt

    image, bos, newline = 9, 2, 7
    # LLaVA-style: vLLM expands one placeholder into the image run the processor made
    assert engine_prompt([bos, 5, image, image, image, 6], image, bos, inserted=False) == [bos, 5, image, 6]
    # PaliGemma-style: vLLM inserts <image>*n + <bos> at the start itself (and appends the newline)
    assert engine_prompt([image] * 4 + [bos, 5, 6, newline], image, bos, inserted=True) == [5, 6, newline]
    with pytest.raises(BackendError, match="start with the image tokens"):
        engine_prompt([bos, image, 5], image, bos, inserted=True)
    with pytest.raises(BackendError, match="no image token"):
        engine_prompt([bos, 5], image, bos, inserted=False)


def test_choice_mode_reports_a_missing_logprob_per_query(fake_vllm, llava_dir, face, monkeypatch):
    backend = _backend(llava_dir, mode="choice")
    monkeypatch.setattr(FakeLLM, "_scored", staticmethod(lambda request: types.SimpleNamespace(
        prompt_token_ids=request["prompt_token_ids"], prompt_logprobs=None, outputs=[])))
    answers = answered(backend, [Query("a", face, RACE, prompt="Race?"), Query("b", face, AGE, prompt="Age?")])
    assert [a.status for a in answers] == ["error", "error"]
    assert "no prompt_logprobs" in answers[0].raw and "numeric" in answers[1].raw


def test_unknown_choice_score_and_mode_are_refused(fake_vllm, llava_dir):
    with pytest.raises(BackendError, match="choice_score='median'.*sum, mean"):
        _backend(llava_dir, mode="choice", choice_score="median")
    with pytest.raises(BackendError, match="unknown mode 'vote'"):
        _backend(llava_dir, mode="vote")


def test_engine_arguments_come_from_options(fake_vllm, llava_dir):
    backend = _backend(llava_dir, tensor_parallel_size=2, data_parallel_size=4, dtype="bf16",
                       max_model_len=2048, engine_args={"enforce_eager": True})
    args = FakeLLM.instances[0].kwargs
    assert args["model"] == str(llava_dir) and args["trust_remote_code"] is False
    assert (args["tensor_parallel_size"], args["data_parallel_size"], args["dtype"]) == (2, 4, "bfloat16")
    assert args["max_model_len"] == 2048 and args["enforce_eager"] is True
    assert args["limit_mm_per_prompt"] == {"image": 1}
    assert backend.identity()["backend"] == "vllm" and backend.prepare([RACE])["vllm"] == "0.0-fake"


def test_a_failing_request_is_retried_alone(fake_vllm, llava_dir, face):
    backend = _backend(llava_dir)
    backend.llm.fail_on = "poison"
    answers = backend.answer([Query("a", face, RACE, prompt="fine"), Query("b", face, RACE, prompt="poison"),
                              Query("c", face, RACE, prompt="fine too")])
    assert [a.status for a in answers] == ["ok", "error", "ok"]
    assert "prompt too long" in answers[1].raw


def test_transformers5_llava_layout_is_refused(fake_vllm, tmp_path):
    folder = tiny_vlms.build_llava(tmp_path / "llava")
    with pytest.raises(BackendError, match="vision_tower.vision_model"):
        _backend(folder)


def test_missing_vllm_says_how_to_install(monkeypatch, llava_dir):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(BackendError, match="pip install"):
        _backend(llava_dir)


def test_constrained_and_choice_runs_have_different_identities_and_directories(fake_vllm, llava_dir,
                                                                                utkface_dir, tmp_path):
    import json

    from vlmface.runner import EvalConfig, evaluate

    global IMAGE_TOKEN
    IMAGE_TOKEN = _backend(llava_dir).tokenizer.convert_tokens_to_ids("<image>")
    runs = {}
    for mode, options in [("constrained", {}), ("choice", {}), ("choice_sum", {"choice_score": "sum"}),
                          ("choice_mean", {"choice_score": "mean"})]:
        result = evaluate(EvalConfig(task="utkface", model=f"vllm:{llava_dir}", data_dir=utkface_dir, limit=4,
                                     attributes=["gender"], out=tmp_path, score=False, progress=False,
                                     options={"mode": mode.split("_")[0], **options}))
        runs[mode] = (result.run_dir, json.loads((result.run_dir / "run.json").read_text())["identity"])
    assert runs["constrained"][0] != runs["choice"][0]
    assert runs["constrained"][1] != runs["choice"][1]
    assert runs["choice"][1]["options"]["mode"] == "choice" and runs["choice"][1]["options"]["choice_score"] == "sum"
    assert runs["constrained"][1]["options"]["mode"] == "constrained"
    assert runs["choice_sum"] == runs["choice"]  # the default rule, said or not, is the same run
    assert runs["choice_mean"][0] != runs["choice"][0] and "choice_score-mean" in runs["choice_mean"][0].name
    records = [json.loads(line) for line in (runs["choice"][0] / "predictions.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["status"] == "ok" and set(r["probs"]) == {"Male", "Female"} for r in records)
