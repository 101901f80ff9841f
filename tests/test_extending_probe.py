"""docs/extending.md, "A probe": the toy probe (one module + one spec, both written from the guide
into a scratch folder) runs end to end on real UTKFace faces with a tiny random CLIP, its table
equals a direct numpy computation, and `vlmface report` shows it, found through probe.json."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import REPO_ROOT
from test_probe_e2e import Direct
from tiny_models import build_tiny_open_clip
from vlmface.errors import SpecError
from vlmface.probes import probe
from vlmface.probes.method import registered

GUIDE = REPO_ROOT / "docs" / "extending.md"
LIMIT = 40


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    """Tiny models run fastest on one thread (see conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def toy(tmp_path_factory, utkface_dir):
    """The guide's probe module and spec written as they are, found the documented way (the
    module on sys.path, named by the spec's `module:`; the spec in $VLMFACE_TASKS/probes/), and run."""
    root = tmp_path_factory.mktemp("toy_probe")
    section = GUIDE.read_text(encoding="utf-8").split("## A probe", 1)[1]
    blocks = dict(re.findall(r"```\w+ file=(\S+)\n(.*?)```", section, flags=re.S))
    assert set(blocks) == {"my_probes.py", "tasks/probes/mean-cosine.yaml"}  # one module, one spec
    for path, text in blocks.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    tiny = build_tiny_open_clip(root / "tiny")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLMFACE_TASKS", str(root / "tasks"))
        mp.syspath_prepend(str(root))
        result = probe("mean-cosine", "utkface", [f"clip:local-dir:{tiny}"], names="tiny", data_dir=utkface_dir,
                       limit=LIMIT, seed=2, out=root / "results" / "probe" / "smile", n_boot=10, device="cpu",
                       cache_dir=False)
    yield root, tiny, result
    sys.modules.pop("my_probes", None)
    registered().pop("mean_cosine", None)


def test_the_toy_probe_table_equals_a_direct_computation(toy, utkface_dir):
    root, tiny, result = toy
    out = result.out
    table = pd.read_csv(out / "mean_cosine.csv", dtype={"group": str}, keep_default_na=False)
    samples = pd.read_csv(out / "samples.csv", dtype=str, keep_default_na=False)
    assert len(samples) == LIMIT
    direct = Direct(tiny)
    images = direct.images([utkface_dir / sid for sid in samples["sample_id"]])
    cosine = images @ direct.texts(["a photo of a smiling person."])[0]
    expected = {("all", "all"): cosine.mean()}
    for col in ("race5", "gender", "age5"):
        for group in set(samples[col]):
            expected[(col, group)] = cosine[(samples[col] == group).to_numpy()].mean()
    got = {(r.group_col, r.group): r.value for r in table.itertuples()}
    assert got.keys() == expected.keys()
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), rtol=0, atol=1e-5)
    assert (table["model"] == "tiny").all() and table.loc[table["group_col"] == "all", "n"].item() == LIMIT


def test_the_toy_probe_folder_lists_its_outputs_and_gets_the_common_tables(toy):
    _, _, result = toy
    record = json.loads((result.out / "probe.json").read_text())
    assert record["probe"]["method"] == "mean_cosine" and record["probe"]["module"] == "my_probes"
    outputs = record["outputs"]
    assert outputs["tables"]["mean_cosine"] == "mean_cosine.csv" and outputs["shown"] == ["mean_cosine"]
    comparison = pd.read_csv(result.out / "comparison.csv")
    assert set(comparison["measure"]) == {"cosine"} and set(comparison["group_col"]) == {"race5", "gender", "age5"}
    assert (result.out / "models" / "tiny.csv").is_file()


def test_the_report_shows_the_toy_probe_table_found_through_probe_json(toy):
    from vlmface.report import build_report

    root, _, result = toy
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root))
        page = build_report(root / "results", plots=False).html.read_text(encoding="utf-8")
    section = page.split('<section class="probe" data-probe="probe/smile">', 1)[1].split("</section>", 1)[0]
    assert "mean cosine · probe/smile" in section and "mean_cosine.csv" in section
    table = pd.read_csv(result.out / "mean_cosine.csv")
    for value in table["value"]:
        assert f"<td>{value:.2f}</td>" in section


def test_a_spec_naming_a_missing_module_or_an_unknown_method_says_what_to_do(tmp_path):
    from vlmface.probes.spec import load_probe_file

    path = tmp_path / "bad.yaml"
    path.write_text("kind: probe\nmethod: mean_cosine\nmodule: no_such_probes\ntext: x\n")
    with pytest.raises(SpecError, match=r"module 'no_such_probes' cannot be imported.*PYTHONPATH"):
        load_probe_file(path)
    path.write_text("kind: probe\nmethod: colour_probe\n")
    with pytest.raises(SpecError, match=r"bad.yaml: method 'colour_probe' is no probe method; known methods: "
                                        r"\[.*'denigration'.*'social_perception'"):
        load_probe_file(path)
