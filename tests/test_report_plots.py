"""Each plot: tidy rows in, a matplotlib Figure out, drawing what the rows say."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from test_report_fixtures import build_results, deltas_frame, write_probe_folder
from vlmface.errors import VlmfaceError
from vlmface.report import collect_runs
from vlmface.report.gallery import plan
from vlmface.report.plots import (confusion_frame, plot_confusion, plot_gap_forest, plot_group_rates,
                                  plot_group_scores, save_figure)
from vlmface.report.social_plots import (factor_effects, plot_factor_effects, plot_warmth_competence,
                                         read_deltas)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return collect_runs(build_results(tmp_path_factory.mktemp("results")))


def _bars(fig: Figure) -> list[BarContainer]:
    return [c for ax in fig.axes for c in ax.containers if isinstance(c, BarContainer)]


def test_group_scores_bars_and_whiskers(collection):
    groups = collection.groups
    gender = groups[(groups["attribute"] == "gender") & (groups["group_col"] == "race")]
    fig = plot_group_scores(gender)
    bars = _bars(fig)
    assert len(bars) == 2  # two runs, one colour each
    first = gender[gender["label"] == gender["label"].iloc[0]].set_index("group")
    heights = [b.get_height() for b in bars[0]]
    assert heights == pytest.approx((100 * first["accuracy"]).tolist())
    assert fig.axes[0].get_ylabel() == "accuracy (%)"
    assert len(fig.axes[0].get_lines()) + len(fig.axes[0].collections) > 0  # CI whiskers drawn


def test_group_scores_of_two_runs_with_one_label_draw_both(collection):
    """Same model and prompt at another limit (README quickstart beside a merged shard run)."""
    groups = collection.groups
    gender = groups[(groups["attribute"] == "gender") & (groups["group_col"] == "race")]
    same_label = gender.assign(label=gender["label"].iloc[0])
    bars = _bars(plot_group_scores(same_label))
    assert len(bars) == 2 and all(len(b) == same_label["group"].nunique() for b in bars)


def test_group_scores_numeric_in_years(collection):
    groups = collection.groups
    age = groups[(groups["attribute"] == "age") & (groups["group_col"] == "race")]
    fig = plot_group_scores(age)
    assert fig.axes[0].get_ylabel() == "MAE (years)"
    assert [b.get_height() for b in _bars(fig)[0]] == pytest.approx(age["mae"].tolist())


def test_refusal_rates_by_group(collection):
    groups = collection.groups
    smol = groups[(groups["model"] == "smolvlm") & (groups["attribute"] == "gender")
                  & (groups["group_col"] == "race")]
    fig = plot_group_rates(smol)
    refused, invalid = _bars(fig)
    assert [b.get_height() for b in refused] == pytest.approx((100 * smol["refusal_rate"]).tolist())
    assert [b.get_height() for b in invalid] == pytest.approx((100 * smol["invalid_rate"]).tolist())
    assert max(b.get_height() for b in refused) > 0


def test_gap_forest_one_row_per_run_and_column(collection):
    d = collection.disparity
    gender = d[(d["attribute"] == "gender") & d["group_col"].isin(["race", "gender"])]
    fig = plot_gap_forest(gender)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == len(gender) == 4
    assert all("(worst " in label for label in labels)


def test_confusion_frame_orders_labels_and_keeps_only_used_non_answers():
    confusion = {"b": {"a": 1, "b": 5, "<invalid>": 0, "<refused>": 2}, "a": {"a": 3, "b": 1, "<invalid>": 0,
                                                                            "<refused>": 0}}
    frame = confusion_frame(confusion, ["a", "b"])
    assert list(frame.index) == ["a", "b"] and list(frame.columns) == ["a", "b", "<refused>"]
    assert frame.loc["b", "<refused>"] == 2
    fig = plot_confusion(confusion, ["a", "b"], "t")
    shares = fig.axes[0].images[0].get_array()
    assert shares[1].sum() == pytest.approx(1.0) and shares[1, 2] == pytest.approx(2 / 8)


def test_save_figure_writes_png_and_svg(tmp_path, collection):
    d = collection.disparity
    png, svg, data = save_figure(plot_gap_forest(d[d["attribute"] == "age"]), tmp_path / "plots", "gap")
    assert png.read_bytes() == data and data[:4] == b"\x89PNG"
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "http://www.w3.org" in text


def test_warmth_competence_by_group():
    deltas = deltas_frame(models=("m1", "m2"))
    fig = plot_warmth_competence(deltas)
    assert len(fig.axes) == 2 * 3  # one panel per model x group column, on shared axes
    assert len({ax.get_xlim() for ax in fig.axes}) == 1 and len({ax.get_ylim() for ax in fig.axes}) == 1
    assert [ax.get_title() for ax in fig.axes[:2]] == ["m1 · by race", "m2 · by race"]
    race = fig.axes[0]
    means = deltas[(deltas["term"] == "") & (deltas["group_col"] == "race")]
    point = means[(means["model"] == "m1") & (means["group"] == "Black")].set_index("dimension")["delta_cos"]
    drawn = [tuple(line.get_xydata()[0]) for line in race.get_lines() if len(line.get_xydata()) == 1]
    assert (pytest.approx(point["warmth"]), pytest.approx(point["competence"])) in drawn


def test_factor_effects_are_spreads_of_group_means():
    deltas = deltas_frame()
    effects = factor_effects(deltas)
    assert len(effects) == 2 * 3  # dimension x factor
    row = effects[(effects["dimension"] == "warmth") & (effects["factor"] == "race")].iloc[0]
    means = deltas[(deltas["term"] == "") & (deltas["dimension"] == "warmth") & (deltas["group_col"] == "race")]
    assert row["effect"] == pytest.approx(means["delta_cos"].max() - means["delta_cos"].min())
    assert row["effect"] >= 0
    fig = plot_factor_effects(effects)
    assert len(_bars(fig)) == 3 and [b.get_height() for b in _bars(fig)[0]] == pytest.approx(
        effects[effects["factor"] == "race"]["effect"].tolist())


def test_read_deltas_csv_round_trip_and_missing_columns(tmp_path):
    path = tmp_path / "deltas.csv"
    deltas_frame().to_csv(path, index=False)
    back = read_deltas(path)
    assert (back["term"] == "").sum() == (deltas_frame()["term"] == "").sum()  # empty term stays empty
    pd.DataFrame({"model": ["m"], "dimension": ["warmth"]}).to_csv(path, index=False)
    with pytest.raises(VlmfaceError, match="missing column"):
        read_deltas(path)


def test_plan_covers_every_plot_kind(tmp_path):
    results = build_results(tmp_path / "results")
    write_probe_folder(results / "probe" / "clip", deltas_frame())
    plots = plan(collect_runs(results))
    stems = [p.stem for p in plots]
    assert len(stems) == len(set(stems))
    kinds = {s.split("__")[0] for s in stems}
    assert kinds == {"groups", "gap", "refusals", "confusion", "warmth_competence", "factor_effects"}
    assert sum(s.startswith("confusion") for s in stems) == 3  # age is numeric: no confusion
    assert [p.section for p in plots][-1] == "social perception · probe/clip"
    assert all(isinstance(p.draw(), Figure) for p in plots if p.stem.startswith("refusals"))


def test_a_probe_of_several_models_gets_the_comparison_figures(tmp_path):
    from vlmface.probes import compare as cmp

    results = tmp_path / "results"
    folder = results / "probe" / "two"
    deltas = deltas_frame(models=("m1", "m2"))
    means = deltas[deltas["term"] == ""]
    wide = means.pivot_table(index=["dimension", "group_col", "group"], columns="model", values="delta_cos", sort=False)
    rows = [{"dimension": d, "group_col": c, "group": g, "model_a": "m1", "model_b": "m2", "n": 10,
             "diff": r["m2"] - r["m1"], "ci_lo": r["m2"] - r["m1"] - 0.5, "ci_hi": r["m2"] - r["m1"] + 0.5,
             "p_value": 0.01, "p_holm": 0.04} for (d, c, g), r in wide.iterrows()]
    write_probe_folder(folder, deltas, model_differences=pd.DataFrame(rows, columns=cmp.DIFFERENCE_COLUMNS))
    plots = plan(collect_runs(results))
    stems = {p.stem.split("__")[0]: p for p in plots}
    assert {"warmth_competence", "factor_effects", "model_differences", "model_heatmap"} <= set(stems)
    forest = stems["model_differences"].draw()
    panels = [ax for ax in forest.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == list(dict.fromkeys(means["dimension"]))
    heatmap = stems["model_heatmap"].draw()
    image = heatmap.axes[0].get_images()[0].get_array()
    assert image.shape == (2, means[means["group_col"] != "all"].drop_duplicates(["group_col", "group"]).shape[0])
