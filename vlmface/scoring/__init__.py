"""The scorer: predictions.jsonl (+ run.json) -> metrics.json + tables. Never runs a model.

Public API (the CLI's `score` and `compare` call exactly these):

    score_run(run_dir, *, min_group_n=30, n_boot=1000, seed=0, answered_only=False,
              confidence=0.95, min_cell_n=10, max_group_values=1000, intersections=2,
              reference_group=None) -> dict
    format_summary(metrics) -> str
    compare_runs(run_a, run_b, *, n_boot=1000, seed=0, confidence=0.95) -> dict
    format_comparison(result) -> str

Outputs of `score_run` in RUN_DIR:

    metrics.json   {"attributes": {ATTR: {"kind", "labels", "kind_inferred",
                      "overall": {"n", "accuracy", "accuracy_ci", "balanced_accuracy",
                                  "macro_f1", ["off_by_one_accuracy"(_ci) if ordinal],
                                  "answered_accuracy"(_ci), "n_total", "n_error",
                                  "n_data_error", "n_answer_error", "n_invalid", "n_refused",
                                  "n_answered", "answer_error_rate", "invalid_rate",
                                  "refusal_rate", "error_rate",
                                  "per_class": {LABEL: {precision, recall, f1, support}},
                                  "confusion": {TRUTH: {PRED|"<invalid>"|"<refused>": count}}},
                      "by_group": {GROUP_COL: {VALUE: {"n", "accuracy", "accuracy_ci",
                                  "accuracy_ci_method", "answered_accuracy", rates, ..., "small",
                                  "selection_rate"|"tpr"|"fpr": {LABEL: value|null}, "n_truth",
                                  ["ece", "brier", "reliability"], "predicted_as", "confusion",
                                  "misclassified_rate", ["accuracy_shrunk" for intersections]}}},
                      "disparity": {GROUP_COL: {"metric", "gap", "gap_ci", "ratio",
                                  "worst_group", "best_group", "std", "excluded_groups",
                                  "dp_gap"|"tpr_gap"|"eodds_gap" (+ "_label", "_ci"),
                                  "eo_gap", "eo_gap_class" (alias of tpr_gap), "min_cell_n",
                                  "test": {"method", "statistic", "p_value", "p_holm", "p_bh"},
                                  ["reference"], ["shrinkage_prior"]}}},
                      "metric_families": [...]}},
                    "run": <run.json content, {} if missing>,
                    "scoring": <settings used, group columns>}
                   Numeric attributes use "mae"/"mae_ci" and "cs5"/"cs5_ci" instead of
                   accuracy (no per_class/confusion; by_group carries "mae", "mae_ci",
                   "cs5", "mean_error"(_ci), "direction"; disparity gap = worst - best MAE). Intersections of two group
                   columns are keyed "AxB" with values "a x b". Undefined values are null.
    tables/        <attr>__overall, __per_class, __confusion, __by_<col>, __disparity,
                   each as .csv and .md (see `vlmface.scoring.tables`).

Definitions: `outcomes` (the error policy: what counts as wrong / excluded),
`metrics` (the registry of metric families, one module each), `classification`,
`numeric`, `groups` (fairlearn names), `bootstrap` (percentile CIs, Wilson), `compare`.
Every family is described in docs/fairness.md.
"""

from vlmface.scoring.compare import compare_runs
from vlmface.scoring.score import score_run
from vlmface.scoring.summary import format_comparison, format_summary

__all__ = ["compare_runs", "format_comparison", "format_summary", "score_run"]
