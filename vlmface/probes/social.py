"""The social-perception probe on one model's embeddings: every table, from unit matrices.

Input: the images' unit embeddings (n, dim), a prompt -> unit vector lookup, the spec, and
the images' factor labels (a DataFrame, one row per image, one string column per factor).
Output: tidy DataFrames (deltas, markedness, ranking, pairs, factor effects and tests,
intersections, extremes). No model, file or plot in sight: `run` feeds it, `outputs` writes.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vlmface.probes import factors as fx
from vlmface.probes import measures as ms
from vlmface.probes.spec import DatasetSettings, SocialPerceptionSpec
from vlmface.scoring.bootstrap import proportion_samples, rng_for

DELTAS_COLUMNS = ["model", "dimension", "term", "group_col", "group", "n", "delta_cos", "ci_lo", "ci_hi"]
ALL = "all"
CONTROL = "control"


def prompt_texts(spec: SocialPerceptionSpec) -> list[str]:
    """Every text the probe encodes: each term's template prompts, then the neutral prompts."""
    return list(dict.fromkeys([p for term in spec.terms for p in spec.prompts(term)] + spec.neutral_prompts))


@dataclass
class Scores:
    """Per image: raw cosines to each term and to the neutral prompt, deltas and dimension scores."""

    terms: list[str]
    term_cos: np.ndarray  # (n, terms)
    neutral_cos: np.ndarray  # (n,)
    deltas: np.ndarray  # (n, terms), x100
    dimensions: list[str]
    dims: np.ndarray  # (n, dims), x100


def score_images(images: np.ndarray, vectors: dict[str, np.ndarray], spec: SocialPerceptionSpec,
                 convention: str | None = None) -> Scores:
    convention = convention or spec.convention
    terms = spec.terms
    prompts = np.stack([np.stack([vectors[p] for p in spec.prompts(term)]) for term in terms])
    neutral = np.stack([vectors[p] for p in spec.neutral_prompts])
    term_cos = ms.term_cosines(images, prompts, convention)
    neutral_cos = ms.prompt_cosines(images, neutral, convention)
    deltas = ms.delta_cos(term_cos, neutral_cos)
    index = {term: i for i, term in enumerate(terms)}
    members = [[index[t] for t in ts] for ts in spec.dimensions.values()]
    return Scores(terms, term_cos, neutral_cos, deltas, list(spec.dimensions), ms.dimension_scores(deltas, members))


def image_scores_table(model: str, scores: Scores, sample_ids: np.ndarray) -> pd.DataFrame:
    """image_scores.csv rows: each image's dimension scores (delta cos x100; deltas.csv's group
    means are their means), one row per (image, dimension)."""
    n, k = scores.dims.shape
    return pd.DataFrame({"model": model, "sample_id": np.repeat(np.asarray(sample_ids), k),
                         "dimension": np.tile(scores.dimensions, n), "value": scores.dims.ravel()})


# ----- group tables ------------------------------------------------------------------------------
def group_order(table: pd.DataFrame, columns: list[str], labels: dict[str, list[str]],
                skip: str | None = None) -> dict[str, list[str]]:
    """Per column: the groups present, in label order (values that are no label after, sorted);
    `skip` (an experimental design's `unvaried` word) is no group of its own."""
    order = {}
    for col in columns:
        present = set(table[col]) - {skip}
        known = labels.get(col, [])
        order[col] = [g for g in known if g in present] + sorted(present - set(known))
    return order


def groupings(table: pd.DataFrame, columns: list[str], order: dict[str, list[str]]):
    """(group_col, group, row mask) for the whole set, then each factor's groups in `order`."""
    yield ALL, ALL, np.ones(len(table), dtype=bool)
    for col in columns:
        values = table[col].to_numpy()
        for group in order[col] if col in order else sorted(set(values)):
            mask = values == group
            if mask.any():
                yield col, group, mask


def group_means(values: np.ndarray, table: pd.DataFrame, columns: list[str], levels: dict[str, list[str]],
                n_boot: int, confidence: float, seed: int) -> list[tuple[str, str, int, np.ndarray, np.ndarray,
                                                                         np.ndarray]]:
    """Per group: (group_col, group, n, mean, ci_lo, ci_hi) of every column of `values` (n, K).
    The resamples of a group depend on the seed and the group only, so every model is
    resampled identically (paired across models)."""
    rows = []
    for col, group, mask in groupings(table, columns, levels):
        rng = rng_for(seed, "probe-means", col, group)
        mean, lo, hi = ms.mean_ci(values[mask], n_boot, rng, confidence)
        rows.append((col, group, int(mask.sum()), mean, lo, hi))
    return rows


def deltas_table(model: str, scores: Scores, spec: SocialPerceptionSpec, table: pd.DataFrame,
                 columns: list[str], levels: dict[str, list[str]], n_boot: int, confidence: float,
                 seed: int) -> pd.DataFrame:
    """deltas.csv rows: per dimension its mean row (empty term) then its term rows; then the
    control terms (dimension 'control', term rows only: a mean over them means nothing)."""
    values = np.concatenate([scores.dims, scores.deltas], axis=1)
    n_dims = len(scores.dimensions)
    term_col = {term: n_dims + i for i, term in enumerate(scores.terms)}
    entries = [(dim, "", d) for d, dim in enumerate(scores.dimensions)]
    for dim, terms in spec.dimensions.items():
        entries += [(dim, term, term_col[term]) for term in terms]
    entries += [(CONTROL, term, term_col[term]) for term in spec.control]
    order = {dim: i for i, dim in enumerate([*scores.dimensions, CONTROL])}
    entries.sort(key=lambda e: (order[e[0]], e[1] != ""))  # stable: spec order of terms kept
    groups = group_means(values, table, columns, levels, n_boot, confidence, seed)
    rows = [(model, dim, term, col, group, n, mean[k], lo[k], hi[k])
            for dim, term, k in entries for col, group, n, mean, lo, hi in groups]
    return pd.DataFrame(rows, columns=DELTAS_COLUMNS)


def intersections_table(model: str, scores: Scores, table: pd.DataFrame, columns: list[str],
                        levels: dict[str, list[str]], n_boot: int, confidence: float, seed: int) -> pd.DataFrame:
    """Dimension means of every intersectional cell (e.g. race5 x gender x age5), deltas format;
    cells in label order."""
    if not columns:
        return pd.DataFrame(columns=DELTAS_COLUMNS)
    name = " x ".join(columns)
    cells = table[columns].astype(str).agg(" x ".join, axis=1).to_frame(name)
    groups = [levels[col] if col in levels else sorted(set(table[col].astype(str))) for col in columns]
    ordered = [" x ".join(c) for c in itertools.product(*groups)]
    rows = []
    for col, group, n, mean, lo, hi in group_means(scores.dims, cells, [name], {name: ordered}, n_boot,
                                                   confidence, seed):
        if col == ALL:
            continue
        for d, dim in enumerate(scores.dimensions):
            rows.append((model, dim, "", col, group, n, mean[d], lo[d], hi[d]))
    return pd.DataFrame(rows, columns=DELTAS_COLUMNS)


def extremes_table(intersections: pd.DataFrame, k: int, min_n: int) -> pd.DataFrame:
    """Per model and dimension, the k highest and k lowest intersectional groups (n >= min_n)."""
    rows = []
    ranked = intersections[intersections["n"] >= min_n]
    for (model, dim), part in ranked.groupby(["model", "dimension"], sort=False):
        part = part.sort_values("delta_cos", ascending=False, kind="stable")
        for side, chosen in (("highest", part.head(k)), ("lowest", part.iloc[::-1].head(k))):
            for rank, (_, row) in enumerate(chosen.iterrows(), start=1):
                rows.append({"model": model, "dimension": dim, "side": side, "rank": rank,
                             **{c: row[c] for c in ["group_col", "group", "n", "delta_cos", "ci_lo", "ci_hi"]}})
    return pd.DataFrame(rows, columns=["model", "dimension", "side", "rank", "group_col", "group", "n",
                                       "delta_cos", "ci_lo", "ci_hi"])


# ----- markedness and ranking -------------------------------------------------------------------
def markedness_table(model: str, scores: Scores, spec: SocialPerceptionSpec, table: pd.DataFrame,
                     columns: list[str], n_boot: int, confidence: float, seed: int) -> pd.DataFrame:
    """% of a group's images whose neutral-prompt cosine beats that of their own group word."""
    index = {term: i for i, term in enumerate(scores.terms)}
    rows = []
    for col in [c for c in columns if c in spec.group_words]:
        values = table[col].to_numpy()
        for group, word in spec.group_words[col].items():
            mask = values == group
            if not mask.any():
                continue
            beats = ms.unmarked(scores.neutral_cos[mask], scores.term_cos[mask, index[word]])
            share = proportion_samples(np.array([beats.sum()]), np.array([mask.sum()]), n_boot,
                                       rng_for(seed, "probe-markedness", col, group))[:, 0]
            alpha = (1 - confidence) / 2
            lo, hi = np.quantile(share, [alpha, 1 - alpha]) if n_boot > 0 else (np.nan, np.nan)
            rows.append({"model": model, "group_col": col, "group": group, "word": word, "n": int(mask.sum()),
                         "markedness": 100 * beats.mean(), "ci_lo": 100 * lo, "ci_hi": 100 * hi})
    return pd.DataFrame(rows, columns=["model", "group_col", "group", "word", "n", "markedness", "ci_lo", "ci_hi"])


def ranking_ks(spec: SocialPerceptionSpec, n: int) -> list[int]:
    """The spec's k values below n (a top-n 'ranking' is the whole set); n // 10 if none is."""
    ks = [k for k in spec.ranking.k if k < n]
    return ks or [max(1, n // 10)]


def ranking_table(model: str, scores: Scores, spec: SocialPerceptionSpec, table: pd.DataFrame,
                  columns: list[str], levels: dict[str, list[str]]) -> pd.DataFrame:
    """Skew@k per group, MaxSkew@k (and the group reaching it) and NDKL, per dimension x factor,
    ranking the images by their dimension score, highest first."""
    rows = []
    for col in columns:
        values = table[col].to_numpy()
        groups = levels[col] if col in levels else sorted(set(values))
        if len(groups) < 2:  # one group: nothing to skew
            continue
        ranked = np.isin(values, groups)  # images at an unvaried level are not ranked on this factor
        codes = np.array([groups.index(v) for v in values[ranked]])
        desired = ms.desired_shares(codes, len(groups), spec.ranking.target)
        ks = ranking_ks(spec, len(codes))
        for d, dim in enumerate(scores.dimensions):
            order = ms.ranking(scores.dims[ranked, d])
            for k in ks:
                skews = ms.skew_at_k(codes, order, k, desired)
                rows += [{"model": model, "dimension": dim, "group_col": col, "metric": "skew", "k": k,
                          "group": g, "value": s} for g, s in zip(groups, skews)]
                top = int(np.argmax(skews))
                rows.append({"model": model, "dimension": dim, "group_col": col, "metric": "maxskew", "k": k,
                             "group": groups[top], "value": skews[top]})
            rows.append({"model": model, "dimension": dim, "group_col": col, "metric": "ndkl", "k": None,
                         "group": "", "value": ms.ndkl(codes, order, desired)})
    frame = pd.DataFrame(rows, columns=["model", "dimension", "group_col", "metric", "k", "group", "value"])
    return frame.astype({"k": "Int64"})


# ----- factor analysis ---------------------------------------------------------------------------
def factor_pairs(table: pd.DataFrame, settings: DatasetSettings, n_pairs: int, seed: int) -> dict[str, np.ndarray]:
    """Per factor, the image pairs that differ in that factor only (the same for every model)."""
    columns = settings.pair_factors()
    codes = np.stack([pd.factorize(table[c].astype(str))[0] for c in columns], axis=1)
    found = {}
    for f, col in enumerate(columns):
        levels = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float) \
            if col in settings.min_distance else None
        found[col] = fx.one_factor_pairs(codes, f, n_pairs, rng_for(seed, "probe-pairs", col), levels,
                                         settings.min_distance.get(col, 0.0))
    return found


def factor_tables(model: str, scores: Scores, pairs: dict[str, np.ndarray], sample_ids: np.ndarray
                  ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(pairs: one row per pair with its |delta delta cos| per dimension; effects: their
    median, mean and quartiles per factor x dimension; tests: Mann-Whitney U between factors)."""
    pair_rows, effect_rows, test_rows = [], [], []
    diffs = {factor: fx.pair_differences(scores.dims, p) for factor, p in pairs.items()}
    for factor, p in pairs.items():
        frame = pd.DataFrame(diffs[factor], columns=scores.dimensions)
        frame.insert(0, "sample_b", sample_ids[p[:, 1]])
        frame.insert(0, "sample_a", sample_ids[p[:, 0]])
        frame.insert(0, "factor", factor)
        pair_rows.append(frame)
    for d, dim in enumerate(scores.dimensions + [ALL]):
        per_factor = {f: (v.ravel() if dim == ALL else v[:, d]) for f, v in diffs.items()}
        for factor, v in per_factor.items():
            if dim == ALL or not len(v):  # a factor the design never varies alone has no effect to report
                continue
            q = np.quantile(v, [0.25, 0.5, 0.75])
            effect_rows.append({"model": model, "dimension": dim, "factor": factor, "n_pairs": len(v),
                                "effect": q[1], "mean": v.mean(), "q25": q[0], "q75": q[2]})
        test_rows += [{"model": model, "dimension": dim, **row} for row in fx.compare_factors(per_factor)]
    pairs_frame = pd.concat(pair_rows, ignore_index=True) if pair_rows else pd.DataFrame()
    pairs_frame.insert(0, "model", model)
    effects = pd.DataFrame(effect_rows, columns=["model", "dimension", "factor", "n_pairs", "effect", "mean",
                                                 "q25", "q75"])
    tests = pd.DataFrame(test_rows, columns=["model", "dimension", "factor_a", "factor_b", "n_a", "n_b",
                                             "median_a", "median_b", "u", "p"])
    return pairs_frame, effects, tests


def analyse(model: str, images: np.ndarray, vectors: dict[str, np.ndarray], spec: SocialPerceptionSpec,
            settings: DatasetSettings, table: pd.DataFrame, levels: dict[str, list[str]],
            pairs: dict[str, np.ndarray], *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
            convention: str | None = None) -> dict[str, pd.DataFrame]:
    """Every social-perception table of one model. `table` holds the images' factor labels
    (strings) and a `sample_id` column, in the row order of `images`."""
    scores = score_images(images, vectors, spec, convention)
    factors = list(settings.factors)
    intersections = intersections_table(model, scores, table, settings.intersections, levels, n_boot,
                                        confidence, seed)
    pairs_frame, effects, tests = factor_tables(model, scores, pairs, table["sample_id"].to_numpy())
    return {
        "deltas": deltas_table(model, scores, spec, table, factors, levels, n_boot, confidence, seed),
        "markedness": markedness_table(model, scores, spec, table, factors, n_boot, confidence, seed),
        "ranking": ranking_table(model, scores, spec, table, factors, levels),
        "intersections": intersections,
        "extremes": extremes_table(intersections, spec.extremes, spec.min_group_n),
        "factor_pairs": pairs_frame,
        "factor_effects": effects,
        "factor_tests": tests,
        "image_scores": image_scores_table(model, scores, table["sample_id"].to_numpy()),
    }
