"""`vlmface eval --prompt-set` end to end on real UTKFace faces: a tiny random-weight VLM through the
CLI (generate and choice modes), and an API model against the local OpenAI-compatible test server
with 3 variants (default + 2 seeded option orders)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import tiny_vlms
from chat_server import ChatServer, fake_key
from vlmface.cli import main
from vlmface.predictions import read_records

KEY_ENV = "VLMFACE_TEST_KEY"


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory):
    return tiny_vlms.build_llava(tmp_path_factory.mktemp("llava") / "model")


def _variant_dirs(out):
    return {p.parent.name: p.parent for p in out.glob("utkface/*/*/run.json")}


@pytest.mark.parametrize("mode", ["generate", "choice"])
def test_prompt_set_on_a_tiny_vlm_through_the_cli(vlm_dir, mode, utkface_dir, tmp_path, capsys):
    code = main(["eval", "--task", "utkface", "--model", f"hf:{vlm_dir}", "--data-dir", str(utkface_dir),
                 "--limit", "8", "--attributes", "race5", "--mode", mode, "--max-new-tokens", "4",
                 "--device", "cpu", "--out", str(tmp_path), "--no-progress", "--prompt-set", "option-order"])
    assert code == 0
    dirs = _variant_dirs(tmp_path)
    [base] = [name for name in dirs if "__ps-" not in name]
    assert base.startswith("default__") and sorted(dirs) == [base, *(f"{base}__ps-option-order-perm{k}" for k in (1, 2, 3))]
    ids = None
    for name, run_dir in dirs.items():
        records = read_records(run_dir / "predictions.jsonl")
        assert len(records) == 8
        ids = ids or {r["sample_id"] for r in records}
        assert {r["sample_id"] for r in records} == ids  # the same faces under every variant
        if mode == "choice":
            assert {r["status"] for r in records} == {"ok"}
    table = pd.read_csv(dirs[base] / "prompt_sensitivity" / "variants.csv")
    assert list(table[table["group_column"] == "all"]["variant"]) == ["default", "perm1", "perm2", "perm3"]
    assert "prompt sensitivity of" in capsys.readouterr().out


def test_prompt_set_against_the_local_api_server_with_3_variants(utkface_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "sets").mkdir()
    (tmp_path / "sets" / "three.yaml").write_text("seed: 0\npermutations: 2\n")
    monkeypatch.setenv("VLMFACE_PROMPT_SETS", str(tmp_path / "sets"))
    key = fake_key()
    monkeypatch.setenv(KEY_ENV, key)
    with ChatServer(key=key) as server:
        argv = ["eval", "--task", "utkface", "--model", "api:test-model", "--data-dir", str(utkface_dir),
                "--limit", "60", "--attributes", "race5,gender", "--base-url", server.url, "--api-key-env", KEY_ENV,
                "--out", str(tmp_path / "out"), "--no-progress", "--prompt-set", "three"]
        assert main(argv) == 0
        sent = server.requests
        # race5: 3 orders; gender has 2 options, so both permutations print "female, male": perm2's
        # gender prompts are perm1's, answered from the response cache
        assert sent == 3 * 60 + 2 * 60
        assert main(argv) == 0 and server.requests == sent  # resumed: every variant already finished
    dirs = _variant_dirs(tmp_path / "out")
    assert len(dirs) == 3
    default = next(d for n, d in dirs.items() if "__ps-" not in n)
    out = default / "prompt_sensitivity"
    variants = pd.read_csv(out / "variants.csv")
    assert set(variants["variant"]) == {"default", "perm1", "perm2"}
    flips = pd.read_csv(out / "flips.csv")
    # the server answers the option at a fixed position of the list, so a new order moves answers
    assert flips[(flips["attribute"] == "race5") & (flips["group_column"] == "all")]["flip_rate"].min() > 0.3
    same = flips[(flips["attribute"] == "gender") & (flips["variant_a"] == "perm1") & (flips["variant_b"] == "perm2")]
    assert (same["flip_rate"] == 0).all() and len(same)
    run = json.loads((dirs[next(n for n in dirs if n.endswith("perm1"))] / "run.json").read_text())
    assert run["prompt_variant"]["name"] == "perm1" and run["templates"]["race5"]["text_sha256"]
    print((out / "variants.md").read_text())


def test_prompt_set_with_clip_class_texts(utkface_dir, tmp_path, monkeypatch, capsys):
    from tiny_models import build_tiny_hf_clip

    model = build_tiny_hf_clip(tmp_path / "clip")
    (tmp_path / "sets").mkdir()
    (tmp_path / "sets" / "texts.yaml").write_text(
        "variants:\n  single: {template: clip_photo_single}\n  up: {casing: upper}\n")
    monkeypatch.setenv("VLMFACE_PROMPT_SETS", str(tmp_path / "sets"))
    argv = ["eval", "--task", "utkface", "--model", f"clip:local-dir:{model}", "--data-dir", str(utkface_dir),
            "--limit", "10", "--attributes", "gender", "--device", "cpu", "--out", str(tmp_path / "out"),
            "--no-progress", "--no-cache"]
    assert main([*argv, "--prompt", "clip_photo", "--prompt-set", "texts"]) == 0
    dirs = {p.parent.name: p.parent for p in (tmp_path / "out").glob("utkface/*/*/run.json")}
    assert len(dirs) == 3
    default = next(d for n, d in dirs.items() if "__ps-" not in n)
    up = next(d for n, d in dirs.items() if n.endswith("-up"))
    probs = {d: [r["probs"]["Male"] for r in read_records(d / "predictions.jsonl")] for d in (default, up)}
    assert probs[default] != probs[up]  # "a photo of a MALE person" is another class text
    variants = pd.read_csv(default / "prompt_sensitivity" / "variants.csv")
    assert set(variants["variant"]) == {"default", "single", "up"}
    assert main([*argv, "--prompt-set", "option-order"]) == 2  # option orders mean nothing to class texts
    assert "reorders options" in capsys.readouterr().err
