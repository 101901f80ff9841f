"""vllm backend with the engine replaced at its boundary (no vllm install needed).

A fake `vllm` module records what the backend submits: the requests (prompt + image), the
sampling parameters and the engine arguments, and answers like a real engine would.
"""

from __future__ import annotations

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
from vlmface.errors import BackendError  # noqa: E402
from vlmface.interpret import answered  # noqa: E402
from vlmface.registry import ModelEntry  # noqa: E402

RACE = Question("race", "categorical", ("White", "Black", "Latino_Hispanic"),
                display={"Latino_Hispanic": "Latino or Hispanic"})
AGE = Question("age", "numeric", ())


class FakeParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class FakeLLM:
    instances: list[FakeLLM] = []

    def __init__(self, **kwargs):
        self.kwargs, self.calls = kwargs, []
        self.fail_on: str | None = None
        FakeLLM.instances.append(self)

    def generate(self, requests, sampling_params=None, use_tqdm=True):
        self.calls.append((list(requests), list(sampling_params)))
        if self.fail_on and any(self.fail_on in r["prompt"] for r in requests):
            raise ValueError("prompt too long")
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=self._reply(r, p), finish_reason="stop")])
                for r, p in zip(requests, sampling_params)]

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
    return tiny_vlms.to_hub_llava_layout(tiny_vlms.build_llava(tmp_path_factory.mktemp("vllm") / "llava"))


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


def test_choice_mode_restricts_decoding_to_the_labels(fake_vllm, llava_dir, face):
    backend = _backend(llava_dir, mode="choice")
    answers = answered(backend, [Query("a", face, RACE, prompt="Race?")])
    params = FakeLLM.instances[0].calls[0][1][0]
    assert params.structured_outputs.choice == ["White", "Black", "Latino or Hispanic"]
    assert (answers[0].status, answers[0].label) == ("ok", "Latino_Hispanic")
    assert "numeric" in backend.unsupported_reason(AGE)
    assert backend.answer([Query("b", face, AGE, prompt="How old?")])[0].status == "error"


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
