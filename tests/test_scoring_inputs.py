"""Issue 13, scorer inputs: bad lines are errors naming file:line and the fix; group columns
that are ids are refused by name; intersections are built from observed cells only."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from scoring_fixtures import record, run_json, write_run
from vlmface.cli import main
from vlmface.errors import PredictionsError
from vlmface.scoring import score_run
from vlmface.scoring.groups import Grouping, _intersection

LABELS = ("happy", "sad")


def _records(n: int = 40, **extra_groups) -> list[dict]:
    return [record(f"s{i}", "emotion", LABELS[i % 2], LABELS[(i // 3) % 2], race="AB"[i % 2],
                   **{col: values[i] for col, values in extra_groups.items()})
            for i in range(n)]


def test_nan_age_truth_is_an_error_naming_the_line(tmp_path):
    records = [record(f"s{i}", "age", 30.0 + i, 31.0 + i, race="A") for i in range(5)]
    records[3]["truth"] = float("nan")
    run = write_run(tmp_path, records, run_json("age", "numeric", (), ("race",)))
    with pytest.raises(PredictionsError, match=r"predictions.jsonl:4: truth is nan for sample 's3'; "
                                               r"a non-finite number cannot be scored"):
        score_run(run, n_boot=10)


def test_infinite_predicted_age_is_an_error(tmp_path):
    records = [record(f"s{i}", "age", 30.0 + i, 31.0 + i, race="A") for i in range(5)]
    records[1]["label"] = float("inf")
    run = write_run(tmp_path, records, run_json("age", "numeric", (), ("race",)))
    with pytest.raises(PredictionsError, match=r"predictions.jsonl:2: label is inf"):
        score_run(run, n_boot=10)


def test_nan_probability_is_an_error(tmp_path):
    records = _records()
    records[6]["probs"] = {"happy": float("nan"), "sad": 0.5}
    run = write_run(tmp_path, records, run_json(labels=LABELS, group_columns=("race",)))
    with pytest.raises(PredictionsError, match=r"predictions.jsonl:7: probs\['happy'\] is nan"):
        score_run(run, n_boot=10)


def test_non_utf8_line_is_an_error_naming_the_line(tmp_path, capsys):
    run = write_run(tmp_path, _records(), run_json(labels=LABELS, group_columns=("race",)))
    path = run / "predictions.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"race": "A"', b'"race": "\xe9A"')
    path.write_bytes(b"".join(lines))
    with pytest.raises(PredictionsError, match=r"predictions.jsonl:3: bytes that are not UTF-8"):
        score_run(run, n_boot=10)
    assert main(["score", str(run), "--n-boot", "10"]) != 0
    err = capsys.readouterr().err
    assert "predictions.jsonl:3: bytes that are not UTF-8" in err and "Traceback" not in err


def test_a_group_column_with_more_values_than_the_cap_is_refused(tmp_path):
    n = 60
    run = write_run(tmp_path, _records(n, shade=[f"v{i % 30}" for i in range(n)]),
                    run_json(labels=LABELS, group_columns=("race", "shade")))
    with pytest.raises(PredictionsError, match=r"group column 'shade' has 30 distinct values \(more than "
                                               r"the cap of 25\).*--max-group-values"):
        score_run(run, n_boot=10, max_group_values=25)
    assert "shade" in score_run(run, n_boot=10)["attributes"]["emotion"]["by_group"]  # default cap 1,000


def test_a_unique_per_sample_group_column_is_refused(tmp_path):
    n = 60
    run = write_run(tmp_path, _records(n, photo_id=[f"p{i}" for i in range(n)]),
                    run_json(labels=LABELS, group_columns=("race", "photo_id")))
    with pytest.raises(PredictionsError, match=r"group column 'photo_id' has 60 distinct values \(more "
                                               r"than half of the 60 samples\)"):
        score_run(run, n_boot=10)
    assert not (run / "metrics.json").exists()


def test_intersections_hold_only_observed_cells_never_a_dense_product():
    rng = np.random.default_rng(0)
    n = 5000
    a = Grouping("a", rng.integers(100_000, size=n), [f"a{i}" for i in range(100_000)])
    b = Grouping("b", rng.integers(50_000, size=n), [f"b{i}" for i in range(50_000)])
    a.codes[:3] = -1  # null values stay out
    tracemalloc.start()
    cell = _intersection(a, b)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    observed = {(x, y) for x, y in zip(a.codes, b.codes) if x >= 0}
    assert len(cell.values) == len(observed) and peak < 20 * 2**20  # 5e9 dense cells would be 37 GiB
    assert (cell.codes[:3] == -1).all()
    i = 10
    assert cell.values[cell.codes[i]] == f"a{a.codes[i]} x b{b.codes[i]}"


def test_three_way_intersections_on_request(tmp_path):
    records = _records(80, gender=["FM"[(i // 2) % 2] for i in range(80)],
                       age=["young", "old"][0:1] * 40 + ["old"] * 40)
    run = write_run(tmp_path, records, run_json(labels=LABELS, group_columns=("race", "gender", "age")))
    pairs = score_run(run, n_boot=10)["attributes"]["emotion"]["by_group"]
    assert "racexgenderxage" not in pairs and "racexgender" in pairs
    triples = score_run(run, n_boot=10, intersections=3)["attributes"]["emotion"]["by_group"]
    cells = triples["racexgenderxage"]
    assert sum(row["n"] for row in cells.values()) == 80
    assert all(value.count(" x ") == 2 for value in cells)
    assert json.loads((run / "metrics.json").read_text())["scoring"]["intersections"] == 3


def test_score_cli_options_reach_the_scorer(tmp_path, capsys):
    run = write_run(tmp_path, _records(80, gender=["FM"[(i // 2) % 2] for i in range(80)]),
                    run_json(labels=LABELS, group_columns=("race", "gender")))
    assert main(["score", str(run), "--n-boot", "20", "--min-cell-n", "5", "--reference-group", "race=A",
                 "--min-group-n", "10"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["scoring"]["min_cell_n"] == 5 and metrics["scoring"]["reference_group"] == ["race", "A"]
    reference = metrics["attributes"]["emotion"]["disparity"]["race"]["reference"]
    assert reference["group"] == "A" and set(reference["groups"]) == {"B"}
    assert main(["score", str(run), "--reference-group", "race=Z"]) != 0
    assert "'race' has no group 'Z'; its groups are A, B" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["score", str(run), "--reference-group", "race"])
    assert "expected COLUMN=GROUP" in capsys.readouterr().err
