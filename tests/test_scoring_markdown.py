"""A run's Markdown tables (vlmface/scoring/tables.py `_markdown`) are exactly what pandas'
`to_markdown(index=False, floatfmt=".4f", missingval="")` writes once missing values are None:
tabulate is called on plain rows only because it is faster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring_fixtures import planted_records, run_json, write_run
from vlmface.scoring import score_run
from vlmface.scoring.tables import _markdown


def _through_pandas(title: str, frame: pd.DataFrame) -> str:
    frame = frame.astype(object).where(frame.notna(), None)
    return f"# {title}\n\n{frame.to_markdown(index=False, floatfmt='.4f', missingval='')}\n"


EDGES = {
    "empty": pd.DataFrame({"group": [], "accuracy": []}),
    "mixed": pd.DataFrame({"n": [30, 2], "small": [False, True], "label": ["1", "happy"],
                           "gap": [np.nan, 0.123456], "worst": [None, "sad"]}),
    "nullable ints": pd.DataFrame({"n": pd.array([1, None], dtype="Int64"), "ratio": [1.0, float("inf")]}),
    "no columns": pd.DataFrame(),
}


@pytest.mark.parametrize("name", EDGES)
def test_markdown_equals_pandas_on_edge_frames(name):
    assert _markdown(name, EDGES[name]) == _through_pandas(name, EDGES[name])


def test_every_table_of_a_scored_run_equals_pandas(tmp_path):
    run_dir = write_run(tmp_path, planted_records(np.random.default_rng(3), 30), run_json())
    score_run(run_dir, n_boot=30)
    written = sorted((run_dir / "tables").glob("*__*.csv"))
    assert len(written) >= 8
    for csv in written:
        frame = pd.read_csv(csv, keep_default_na=False, na_values=[""])
        title = csv.stem.replace("__", ": ")
        assert _markdown(title, frame) == _through_pandas(title, frame), csv.name
        assert (csv.with_suffix(".md")).read_text(encoding="utf-8").splitlines()[2].startswith("|")
