"""benchmarks/gpu_bench.py: the prepared GPU benchmark cannot rot before a GPU is lent.

The --smoke run goes through the same code as the GPU run (models saved to a temp dir, loaded by
`vlmface.evaluate` through clip:local-dir: and hf:, real UTKFace faces), with tiny configurations on
CPU. The full-size configurations are checked against the published parameter counts on the meta
device, so no memory is used.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH = REPO_ROOT / "benchmarks"
FACES = REPO_ROOT.parent / "shared" / "data" / "utkface" / "crop_part1"
sys.path.insert(0, str(BENCH))

import gpu_bench  # noqa: E402
import gpu_models  # noqa: E402

pytestmark = pytest.mark.slow  # the smoke run builds and runs every benchmarked model family


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-bench") / "smoke.json"
    faces = tmp_path_factory.mktemp("faces")  # the 40 first faces: each harness run lists its folder
    for face in sorted(FACES.glob("*.jpg"))[:40]:
        shutil.copy2(face, faces / face.name)
    # a generous budget: the smoke run checks the code path, and CI machines may be loaded
    finished = subprocess.run([sys.executable, str(BENCH / "gpu_bench.py"), "--smoke", "--budget", "900",
                               "--data-dir", str(faces), "--out", str(out)],
                              capture_output=True, text=True, timeout=1000, cwd=REPO_ROOT)
    assert finished.returncode == 0, finished.stderr[-2000:]
    return json.loads(out.read_text()), out.with_suffix(".md").read_text(), finished.stdout


def check_pair(entry: dict, batch_size: int) -> None:
    bare, harness = entry["bare"], entry["harness"]
    assert bare["images_per_s"] > 0 and bare["batch_size"] == batch_size and bare["calls"] >= 2
    assert harness["images_per_s"] > 0 and harness["images_per_s_with_load"] > 0
    assert harness["errors"] == 0, "every face must be answered through the harness"
    assert harness["n"] > batch_size, "at least two batches, so the rate excludes the model load"
    assert 0 < harness["time_to_first_result_s"] <= harness["wall_s"]
    assert entry["ratio"] == pytest.approx(harness["images_per_s"] / bare["images_per_s"], abs=6e-4)  # 3 decimals
    assert "peak_gpu_mib" in harness  # None on CPU


def test_smoke_writes_every_section_with_bare_harness_and_ratio(smoke):
    results, table, stdout = smoke
    sections = results["sections"]
    assert list(sections) == list(gpu_bench.STEPS)
    for step in ("clip-ViT-B-32", "clip-ViT-L-14"):
        assert sections[step]["status"] == "ok" and sections[step]["complete"]
        check_pair(sections[step], batch_size=16)
        assert sections[step]["harness"]["workers"] == 1  # the loader's worker processes are on
    for step, model in (("hf-paligemma-3b-224", "paligemma-3b-224"), ("hf-llava-1.5-7b", "llava-1.5-7b")):
        assert sections[step]["status"] == "ok" and sections[step]["complete"]
        for mode in ("choice", "generate"):
            assert list(sections[step][mode]) == [str(b) for b in gpu_bench.SMOKE_HF_BATCHES[model]]
            for batch_size, entry in sections[step][mode].items():
                check_pair(entry, int(batch_size))
    assert gpu_bench.HF_BATCHES["paligemma-3b-224"] == (1, 8, 32, 64)  # the GPU run's sizes
    assert all(len(gpu_bench.SMOKE_HF_BATCHES[m]) == len(b) for m, b in gpu_bench.HF_BATCHES.items())
    vllm = sections["vllm-paligemma-3b-224"]
    if importlib.util.find_spec("vllm") is None:
        assert "not importable" in vllm["skipped"] and "vllm-paligemma-3b-224" in results["skipped"]
        assert "skipped vllm-paligemma-3b-224: vllm is not importable" in stdout
    else:
        assert "skipped" in vllm  # no CPU smoke configuration for vLLM
    assert table.count("| hf-paligemma-3b-224 | choice b") == 4 and "| clip-ViT-L-14 | - | 16 |" in table


def test_time_box_kills_the_step_and_keeps_its_partial_figures(tmp_path):
    """A step run past its time box is killed; what its part file holds is still reported."""
    args = gpu_bench.parse_args(["--smoke", "--data-dir", str(FACES), "--out", str(tmp_path / "x.json")])
    (tmp_path / "clip-ViT-B-32.json").write_text(json.dumps({"kind": "clip", "params": 5}))  # written so far
    section = gpu_bench.child("clip-ViT-B-32", args, tmp_path, timeout=0.05)
    assert section["status"].startswith("timed out after") and section["params"] == 5
    assert "harness" not in section
    rows = list(gpu_bench.rows({"sections": {"clip-ViT-B-32": section}}))
    assert rows == [("clip-ViT-B-32", "-", "-", "", section["status"], "", "", "")]


@pytest.mark.parametrize("name", list(gpu_models.PUBLISHED_PARAMS))
def test_full_size_configs_match_published_parameter_counts(name):
    counted = gpu_models.meta_param_count(name)
    assert counted == pytest.approx(gpu_models.PUBLISHED_PARAMS[name], rel=0.02)


def test_published_sizes_are_the_cited_ones():
    # ViT-B-32 ~151M, ViT-L-14 ~428M, PaliGemma-3B ~2.92B, LLaVA-1.5-7B ~7.06B (issue 20)
    approx = {"ViT-B-32": 151e6, "ViT-L-14": 428e6, "paligemma-3b-224": 2.92e9, "llava-1.5-7b": 7.06e9}
    for name, size in approx.items():
        assert gpu_models.PUBLISHED_PARAMS[name] == pytest.approx(size, rel=0.005)


def test_synthetic_tokenizer_has_the_real_vocabulary_size():
    tok = gpu_models.synthetic_tokenizer(gpu_models.PALIGEMMA_VOCAB, ["<image>"], bos="<bos>", eos="<eos>",
                                         pad="<pad>", unk="<unk>")
    assert len(tok) == gpu_models.PALIGEMMA_VOCAB
    assert tok.convert_ids_to_tokens(tok.convert_tokens_to_ids("<image>")) == "<image>"
    ids = tok("What is the gender of the person?", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "What is the gender of the person?"
