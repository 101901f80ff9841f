"""Compact, human-readable text for a metrics dict and for a comparison of two runs."""

from __future__ import annotations

from typing import Any


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ci(bounds: list | None, digits: int = 3) -> str:
    if not bounds or bounds[0] is None:
        return ""
    return f" [{bounds[0]:.{digits}f}, {bounds[1]:.{digits}f}]"


def _headline(name: str, attr: dict[str, Any]) -> str:
    o = attr["overall"]
    if attr["kind"] == "numeric":
        scores = (f"MAE {_num(o['mae'], 2)}{_ci(o['mae_ci'], 2)}  "
                  f"CS@5 {_num(o['cs5'])}{_ci(o['cs5_ci'])}")
    else:
        scores = (f"accuracy {_num(o['accuracy'])}{_ci(o['accuracy_ci'])}  "
                  f"macro-F1 {_num(o['macro_f1'])}")
        if "off_by_one_accuracy" in o:
            scores += f"  off-by-one {_num(o['off_by_one_accuracy'])}"
    return f"{name} ({attr['kind']}): n={o['n']}  {scores}"


def _status_line(o: dict[str, Any], answered_only: bool) -> str:
    def part(label: str, count: int, rate: float | None) -> str:
        return f"{label} {count}" + (f" ({rate:.1%})" if rate is not None else "")

    non_answers = "excluded (answered only)" if answered_only else "scored as wrong"
    answer_errors = o.get("n_answer_error", 0)
    line = (f"  {part('invalid', o['n_invalid'], o['invalid_rate'])}, "
            f"{part('refused', o['n_refused'], o['refusal_rate'])}, "
            f"{part('answer errors', answer_errors, o.get('answer_error_rate'))}: {non_answers}")
    if o.get("answered_accuracy") is not None and not answered_only:
        line += f"; answered-only {_num(o['answered_accuracy'])}"
    data_errors = o.get("n_data_error", o["n_error"])
    if data_errors:
        line += f"; {data_errors} data error(s) (unreadable image) left out of n"
    return line


def _test_part(d: dict[str, Any]) -> str:
    test = d.get("test") or {}
    if test.get("p_value") is None:
        return ""
    return f", p={test['p_value']:.2g} (Holm {test['p_holm']:.2g})" if test.get("p_holm") is not None \
        else f", p={test['p_value']:.2g}"


def _per_class_part(d: dict[str, Any]) -> str:
    if "tpr_gap" not in d:
        if d.get("aged_up_most"):
            return f"; aged up most {d['aged_up_most']}, down most {d['aged_down_most']}"
        return ""
    if d["tpr_gap"] is None and d["dp_gap"] is None:
        return f"; per-class gaps: n < {d['min_cell_n']}"
    parts = [f"{name} {_num(d[key])} ({d[key + '_label']})" for name, key in
             (("DP gap", "dp_gap"), ("TPR gap", "tpr_gap"), ("EOdds gap", "eodds_gap")) if d[key] is not None]
    return "; " + ", ".join(parts)


def _group_line(col: str, d: dict[str, Any]) -> str:
    if d["gap"] is None:
        return f"  {col}: fewer than 2 groups large enough to compare"
    digits = 2 if d["metric"] == "mae" else 3
    line = (f"  {col}: worst {d['worst_group']}, best {d['best_group']}, "
            f"{d['metric']} gap {_num(d['gap'], digits)}{_ci(d['gap_ci'], digits)}{_test_part(d)}")
    line += _per_class_part(d)
    if d["excluded_groups"]:
        line += f"; {len(d['excluded_groups'])} small group(s) left out"
    return line


def format_summary(metrics: dict[str, Any]) -> str:
    settings = metrics.get("scoring", {})
    singles = settings.get("group_columns")
    lines = []
    for name, attr in metrics["attributes"].items():
        lines += [_headline(name, attr), _status_line(attr["overall"],
                                                      settings.get("answered_only", False))]
        disparity = attr["disparity"]
        shown = [c for c in disparity if singles is None or c in singles]
        pairs = [c for c in disparity if c not in shown and disparity[c]["gap"] is not None]
        lines += [_group_line(col, disparity[col]) for col in shown]
        if pairs:
            widest = max(pairs, key=lambda c: disparity[c]["gap"])
            lines.append(_group_line(widest, disparity[widest]) + "  (widest intersection)")
    return "\n".join(lines)


def format_comparison(result: dict[str, Any]) -> str:
    lines = [f"A: {result['run_a']}", f"B: {result['run_b']}"]
    for name, r in result["attributes"].items():
        lines.append(
            f"{name}: {r['n_paired']} paired ({r['n_unpaired_a']} only in A, "
            f"{r['n_unpaired_b']} only in B, {r['n_excluded_error']} with errors)  "
            f"{r['metric']} A {_num(r['accuracy_a'])}, B {_num(r['accuracy_b'])}, "
            f"B - A {r['difference']:+.3f}{_ci(r['difference_ci'])}  "
            f"McNemar p={r['mcnemar_p']:.3g} (A only right {r['a_only_correct']}, "
            f"B only right {r['b_only_correct']})")
    for name, why in result.get("skipped", {}).items():
        lines.append(f"{name}: skipped ({why})")
    return "\n".join(lines)
