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
from vlmface.probes.resample import index_samples, mean_samples, wilson
from vlmface.probes.spec import Ranking
from vlmface.scoring.bootstrap import rng_for

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
    raw_dims: np.ndarray  # (n, dims): the mean raw cosine over each dimension's terms (no neutral prompt)

    def take(self, rows: np.ndarray) -> Scores:
        """The scores of some images only (a boolean mask or indices)."""
        return Scores(self.terms, self.term_cos[rows], self.neutral_cos[rows], self.deltas[rows], self.dimensions,
                      self.dims[rows], self.raw_dims[rows])


def score_images(images: np.ndarray, vectors: dict[str, np.ndarray], spec: SocialPerceptionSpec,
                 convention: str | None = None, delta: str | None = None) -> Scores:
    """delta: 'absolute' (cos - neutral) or 'relative' ((cos - neutral) / neutral); default the spec's."""
    convention = convention or spec.convention
    terms = spec.terms
    prompts = np.stack([np.stack([vectors[p] for p in spec.prompts(term)]) for term in terms])
    neutral = np.stack([vectors[p] for p in spec.neutral_prompts])
    term_cos = ms.term_cosines(images, prompts, convention)
    neutral_cos = ms.prompt_cosines(images, neutral, convention)
    deltas = ms.delta_cos(term_cos, neutral_cos, delta or spec.delta)
    index = {term: i for i, term in enumerate(terms)}
    members = [[index[t] for t in ts] for ts in spec.dimensions.values()]
    return Scores(terms, term_cos, neutral_cos, deltas, list(spec.dimensions), ms.dimension_scores(deltas, members),
                  ms.dimension_scores(term_cos, members))


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
                n_boot: int, confidence: float, seed: int, clusters: np.ndarray | None = None
                ) -> list[tuple[str, str, int, np.ndarray, np.ndarray, np.ndarray]]:
    """Per group: (group_col, group, n, mean, ci_lo, ci_hi) of every column of `values` (n, K).
    The resamples of a group depend on the seed and the group only, so every model is
    resampled identically (paired across models). `clusters` (one identity per row): resample
    identities, not images."""
    rows = []
    for col, group, mask in groupings(table, columns, levels):
        rng = rng_for(seed, "probe-means", col, group)
        mean, lo, hi = ms.mean_ci(values[mask], n_boot, rng, confidence,
                                  None if clusters is None else clusters[mask])
        rows.append((col, group, int(mask.sum()), mean, lo, hi))
    return rows


def deltas_table(model: str, scores: Scores, spec: SocialPerceptionSpec, table: pd.DataFrame,
                 columns: list[str], levels: dict[str, list[str]], n_boot: int, confidence: float,
                 seed: int, clusters: np.ndarray | None = None) -> pd.DataFrame:
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
    groups = group_means(values, table, columns, levels, n_boot, confidence, seed, clusters)
    rows = [(model, dim, term, col, group, n, mean[k], lo[k], hi[k])
            for dim, term, k in entries for col, group, n, mean, lo, hi in groups]
    return pd.DataFrame(rows, columns=DELTAS_COLUMNS)


def intersections_table(model: str, scores: Scores, table: pd.DataFrame, columns: list[str],
                        levels: dict[str, list[str]], n_boot: int, confidence: float, seed: int,
                        clusters: np.ndarray | None = None) -> pd.DataFrame:
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
                                                   confidence, seed, clusters):
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
                     columns: list[str], n_boot: int, confidence: float, seed: int,
                     clusters: np.ndarray | None = None) -> pd.DataFrame:
    """% of a group's images whose neutral-prompt cosine beats that of their own group word
    (CI: Wilson score interval, or a bootstrap over identities with `clusters`)."""
    index = {term: i for i, term in enumerate(scores.terms)}
    rows = []
    for col in [c for c in columns if c in spec.group_words]:
        values = table[col].to_numpy()
        for group, word in spec.group_words[col].items():
            mask = values == group
            if not mask.any():
                continue
            beats = ms.unmarked(scores.neutral_cos[mask], scores.term_cos[mask, index[word]])
            if clusters is None:  # independent images: the Wilson score interval of the share
                lo, hi = wilson(int(beats.sum()), int(mask.sum()), confidence)
            else:  # renders of the same identities: resample identities
                share = mean_samples(beats[:, None].astype(float), n_boot,
                                     rng_for(seed, "probe-markedness", col, group), clusters[mask])[:, 0]
                alpha = (1 - confidence) / 2
                lo, hi = np.quantile(share, [alpha, 1 - alpha]) if n_boot > 0 else (np.nan, np.nan)
            rows.append({"model": model, "group_col": col, "group": group, "word": word, "n": int(mask.sum()),
                         "markedness": 100 * beats.mean(), "ci_lo": 100 * lo, "ci_hi": 100 * hi})
    return pd.DataFrame(rows, columns=["model", "group_col", "group", "word", "n", "markedness", "ci_lo", "ci_hi"])


def ranking_ks(ranking: Ranking, n: int) -> list[int]:
    """The k values below n (a top-n 'ranking' is the whole set); n // 10 if none is."""
    ks = [k for k in ranking.k if k < n]
    return ks or [max(1, n // 10)]


RANKING_COLUMNS = ["model", "dimension", "group_col", "metric", "k", "group", "n", "value", "ci_lo", "ci_hi"]


def ranked_images(table: pd.DataFrame, ranking: Ranking) -> tuple[np.ndarray, pd.DataFrame]:
    """(row indices of the images ranked, their labels after `ranking.groups`): images whose
    label is not listed under a mapped attribute are left out; with `ranking.balance`, every
    cell of those attributes is then downsampled to len // number of cells (the authors'
    analysis/tab_S3_skew_gen.py, preprocess_data), seeded by `ranking.balance_seed`."""
    labels = table.copy()
    keep = np.ones(len(table), dtype=bool)
    for col, mapping in ranking.groups.items():
        keep &= table[col].isin(list(mapping)).to_numpy()
        labels[col] = table[col].map(mapping).fillna(table[col])
    rows = np.flatnonzero(keep)
    if ranking.balance and len(rows):
        cells = labels.iloc[rows][ranking.balance].astype(str).agg(" x ".join, axis=1).to_numpy()
        n_cells = int(np.prod([labels.iloc[rows][c].nunique() for c in ranking.balance]))
        per_cell = len(rows) // n_cells
        rng = np.random.default_rng(ranking.balance_seed)
        chosen = []
        for cell in dict.fromkeys(cells):
            members = rows[cells == cell]
            chosen.append(rng.choice(members, min(per_cell, len(members)), replace=False))
        rows = np.sort(np.concatenate(chosen))
    return rows, labels.iloc[rows].reset_index(drop=True)


def _ranking_values(codes: np.ndarray, score: np.ndarray, ks: list[int], desired: np.ndarray) -> np.ndarray:
    """[Skew@k of each group for each k..., MaxSkew@k for each k..., NDKL] of one ranking."""
    order = ms.ranking(score)
    skews = [ms.skew_at_k(codes, order, k, desired) for k in ks]
    return np.concatenate([*skews, [s.max() for s in skews], [ms.ndkl(codes, order, desired)]])


def _quantiles(draws: np.ndarray, confidence: float) -> np.ndarray:
    """(2, K) percentile bounds that are always drawn values (so -inf Skew@k stays -inf, never NaN)."""
    alpha = (1 - confidence) / 2
    if not len(draws):
        return np.full((2, draws.shape[1]), np.nan)
    return np.quantile(draws, [alpha, 1 - alpha], axis=0, method="inverted_cdf")


def ranking_table(model: str, scores: Scores, spec: SocialPerceptionSpec, table: pd.DataFrame,
                  columns: list[str], levels: dict[str, list[str]], ranking: Ranking | None = None,
                  n_boot: int = 0, confidence: float = 0.95, seed: int = 0,
                  clusters: np.ndarray | None = None) -> pd.DataFrame:
    """Skew@k per group, MaxSkew@k (and the group reaching it) and NDKL, per dimension x factor,
    ranking the images by their dimension score (delta or raw cosine, `ranking.score`), highest
    first; percentile bootstrap CIs over images (or identities), the desired shares held fixed."""
    ranking = ranking or spec.ranking
    rows_ranked, labels = ranked_images(table, ranking)
    values_by_score = scores.raw_dims if ranking.score == "raw" else scores.dims
    rows = []
    for col in columns:
        values = labels[col].to_numpy()
        groups = ([g for g in dict.fromkeys(ranking.groups[col].values()) if g in set(values)]
                  if col in ranking.groups else levels[col] if col in levels else sorted(set(values)))
        if len(groups) < 2:  # one group: nothing to skew
            continue
        ranked = np.isin(values, groups)  # images at an unvaried level are not ranked on this factor
        index = rows_ranked[ranked]
        codes = np.array([groups.index(v) for v in values[ranked]])
        desired = ms.desired_shares(codes, len(groups), ranking.target)
        ks = ranking_ks(ranking, len(codes))
        for d, dim in enumerate(scores.dimensions):
            score = values_by_score[index, d]
            point = _ranking_values(codes, score, ks, desired)
            rng = rng_for(seed, "probe-ranking", col, dim)
            draws = np.array([_ranking_values(codes[i], score[i], ks, desired)
                              for i in index_samples(len(codes), n_boot, rng,
                                                     None if clusters is None else clusters[index])])
            lo, hi = _quantiles(draws.reshape(len(draws), len(point)), confidence)
            j = 0
            for k in ks:
                for g in groups:
                    rows.append((model, dim, col, "skew", k, g, len(codes), point[j], lo[j], hi[j]))
                    j += 1
            for i, k in enumerate(ks):
                top = int(np.argmax(point[i * len(groups):(i + 1) * len(groups)]))
                rows.append((model, dim, col, "maxskew", k, groups[top], len(codes), point[j], lo[j], hi[j]))
                j += 1
            rows.append((model, dim, col, "ndkl", None, "", len(codes), point[j], lo[j], hi[j]))
    frame = pd.DataFrame(rows, columns=RANKING_COLUMNS)
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


def measure_rows(table: pd.DataFrame, settings: DatasetSettings) -> np.ndarray:
    """Mask of the images that enter group means, markedness and rankings: all but those at a
    `measures_exclude` label (they still enter the factor pairs)."""
    keep = np.ones(len(table), dtype=bool)
    for col, labels in settings.measures_exclude.items():
        keep &= ~table[col].astype(str).isin(labels).to_numpy()
    return keep


def analyse(model: str, images: np.ndarray, vectors: dict[str, np.ndarray], spec: SocialPerceptionSpec,
            settings: DatasetSettings, table: pd.DataFrame, levels: dict[str, list[str]],
            pairs: dict[str, np.ndarray], *, n_boot: int = 1000, confidence: float = 0.95, seed: int = 0,
            convention: str | None = None, delta: str | None = None) -> dict[str, pd.DataFrame]:
    """Every social-perception table of one model. `table` holds the images' factor labels
    (strings) and a `sample_id` column, in the row order of `images`. CIs resample identities
    when the settings name an identity column, images otherwise."""
    all_scores = score_images(images, vectors, spec, convention, delta)
    keep = measure_rows(table, settings)
    scores, measured = all_scores.take(keep), table[keep].reset_index(drop=True)
    clusters = measured[settings.identity].astype(str).to_numpy() if settings.identity else None
    factors = list(settings.factors)
    boot = {"n_boot": n_boot, "confidence": confidence, "seed": seed, "clusters": clusters}
    intersections = intersections_table(model, scores, measured, settings.intersections, levels, **boot)
    pairs_frame, effects, tests = factor_tables(model, all_scores, pairs, table["sample_id"].to_numpy())
    return {
        "deltas": deltas_table(model, scores, spec, measured, factors, levels, **boot),
        "markedness": markedness_table(model, scores, spec, measured, factors, **boot),
        "ranking": ranking_table(model, scores, spec, measured, factors, levels, settings.ranking, **boot),
        "intersections": intersections,
        "extremes": extremes_table(intersections, spec.extremes, spec.min_group_n),
        "factor_pairs": pairs_frame,
        "factor_effects": effects,
        "factor_tests": tests,
        "image_scores": image_scores_table(model, scores, measured["sample_id"].to_numpy()),
    }
