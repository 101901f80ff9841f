"""Opt-in: `choice` on a real vLLM engine (CPU build) equals `choice` on the hf backend.

    VLMFACE_VLLM_PYTHON=/path/to/vllm-venv/bin/python pytest tests/test_vllm_cpu_choice.py -s

For a tiny LLaVA and a tiny PaliGemma (tests/tiny_vlms.py, head_dim 32), real UTKFace faces are
asked race and gender in mode "choice" by the vllm backend (in the vLLM interpreter) and by
the hf backend (here). Both must give the same label and the same probabilities to 1e-3, and
both must agree with a log-likelihood computed here independently of the backends: one plain
forward pass of prompt + label through the transformers model, the label tokens' log-softmax
summed. The largest differences are printed (-s) for the closing note.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

VLLM_PYTHON = os.environ.get("VLMFACE_VLLM_PYTHON")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not VLLM_PYTHON, reason="opt-in: set VLMFACE_VLLM_PYTHON to a python with vllm")]

REPO = Path(__file__).resolve().parents[1]
UTKFACE = REPO.parent / "shared" / "data" / "utkface" / "crop_part1"
LABELS = {"race5": (["White", "Black", "Asian", "Indian", "Others"], {"Others": "other race"}),
          "gender": (["Male", "Female"], {})}

WORKER = r'''
import json, sys
from PIL import Image
from vlmface.backends.base import Query, Question
from vlmface.backends.vllm import VLLMBackend
from vlmface.interpret import answered
from vlmface.registry import ModelEntry

if __name__ == "__main__":  # the engine runs in a child process
    spec = json.load(open(sys.argv[1]))
    backend = VLLMBackend(ModelEntry(name="tiny", backend="vllm", weights=spec["model"]),
                          {"dtype": "fp32", "mode": "choice", "engine_args": {"max_model_len": 512}})
    queries = [Query(q["id"], Image.open(q["image"]).convert("RGB"),
                     Question(q["attribute"], "categorical", tuple(q["labels"]), q["display"]), prompt=q["prompt"])
               for q in spec["queries"]]
    json.dump([{"status": a.status, "label": a.label, "raw": a.raw, "probs": a.probs,
                "loglik": (a.extra or {}).get("loglik")} for a in answered(backend, queries)], open(sys.argv[2], "w"))
'''


def _queries() -> list[dict]:
    faces = sorted(UTKFACE.glob("*.jpg"))
    faces = faces[:6:2] + faces[-6::2]
    return [{"id": face.name, "image": str(face), "attribute": attribute, "labels": labels, "display": display,
             "prompt": f"What is the {attribute} of the person? Choose one of: {', '.join(labels)}."}
            for face in faces for attribute, (labels, display) in LABELS.items()]


def _served(model: Path, queries: list[dict], tmp_path: Path) -> list[dict]:
    spec, result, worker = tmp_path / "spec.json", tmp_path / "out.json", tmp_path / "worker.py"
    spec.write_text(json.dumps({"model": str(model), "queries": queries}))
    worker.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    done = subprocess.run([VLLM_PYTHON, str(worker), str(spec), str(result)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(result.read_text())


def _independent_loglik(backend, query, name: str) -> float:
    """log p(label | prompt, image) by one forward pass over prompt + label (no cache, no backend code)."""
    import torch

    inputs = backend._inputs([backend.format_prompt(query)], [query.image])
    label = torch.tensor([backend.tokenizer(name, add_special_tokens=False)["input_ids"]])
    ids = torch.cat([inputs.pop("input_ids"), label], dim=1)
    inputs.pop("attention_mask")
    if "token_type_ids" in inputs:  # PaliGemma: the label is the causal suffix
        inputs["token_type_ids"] = torch.cat([inputs["token_type_ids"], torch.ones_like(label)], dim=1)
    with torch.no_grad():
        logits = backend.model(input_ids=ids, attention_mask=torch.ones_like(ids), **inputs).logits[0]
    logp = logits.float().log_softmax(-1)
    start = ids.shape[1] - label.shape[1]
    return sum(logp[start + k - 1, label[0, k]].item() for k in range(label.shape[1]))


@pytest.mark.parametrize("family", ["llava", "paligemma"])
def test_vllm_choice_probabilities_equal_hf_and_an_independent_loglik(family, tmp_path):
    import tiny_vlms
    from PIL import Image

    from vlmface.backends.base import Query, Question
    from vlmface.backends.hf import HFBackend
    from vlmface.interpret import answered
    from vlmface.registry import ModelEntry

    if family == "llava":
        model = tiny_vlms.to_hub_llava_layout(tiny_vlms.build_llava(tmp_path / "llava", head_dim=32))
    else:
        model = tiny_vlms.to_hub_llava_layout(
            tiny_vlms.build_paligemma(tmp_path / "paligemma", head_dim=32, newline_token=True))
    queries = _queries()
    served = _served(model, queries, tmp_path)
    hf = HFBackend(ModelEntry(name="tiny", backend="hf", weights=str(model)),
                   {"device": "cpu", "dtype": "fp32", "mode": "choice"})
    local_queries = [Query(q["id"], Image.open(q["image"]).convert("RGB"),
                           Question(q["attribute"], "categorical", tuple(q["labels"]), q["display"]),
                           prompt=q["prompt"]) for q in queries]
    local = answered(hf, local_queries)
    prob_diff, loglik_diff, independent_diff = [], [], []
    for query, theirs, mine in zip(local_queries, served, local):
        assert theirs["status"] == "ok", theirs["raw"]
        assert mine.status == "ok" and theirs["label"] == mine.label
        for label, name in zip(query.question.labels, query.question.choices):
            prob_diff.append(abs(theirs["probs"][label] - mine.probs[label]))
            loglik_diff.append(abs(theirs["loglik"][label] - mine.extra["loglik"][label]))
            independent_diff.append(abs(_independent_loglik(hf, query, name) - mine.extra["loglik"][label]))
    print(f"\n{family}: {len(local)} queries, {len(prob_diff)} label probabilities; max |p_vllm - p_hf| = "
          f"{max(prob_diff):.2e}, max |loglik_vllm - loglik_hf| = {max(loglik_diff):.2e}, "
          f"max |loglik_hf - independent| = {max(independent_diff):.2e}")
    assert max(independent_diff) < 1e-4
    assert max(prob_diff) < 1e-3
    # LLaVA: the same tokens in, the same log-likelihoods out. PaliGemma (measured: up to 0.11 nats):
    # vLLM inserts the image tokens + BOS into a token prompt itself and appends "\n" after the whole
    # prompt, so the label does not follow the "\n" the transformers processor puts after the question,
    # and the literal <image> of the raw prompt stays in; probabilities of this peaked tiny model
    # still agree to < 1e-4. Known limitation, see vllm_choice.py.
    if family == "llava":
        assert max(loglik_diff) < 1e-4
    assert all(math.isfinite(d) for d in loglik_diff)
