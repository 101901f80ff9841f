"""The probes' measures: pure numpy on unit embedding matrices and per-image scores.

Shapes: images (n, dim) unit rows; a term's prompts (m, dim) unit rows (one per template).
Everything here is a plain function of arrays, so each measure is tested on planted values.

Conventions (Hausladen et al.): cos(image, term) is the mean over templates of the cosine to
each template's prompt ("templates"); "embedding" instead averages the normalised template
embeddings first, renormalises and takes one cosine (the CLIP_benchmark class-weight
convention). delta cos = cos(image, term) - cos(image, neutral), x100. Ranking measures
follow Geyik et al. 2019: Skew@k(g) = ln(share of g in the top k / desired share of g),
MaxSkew@k = max over groups, NDKL = sum_i KL(top-i shares || desired) / log2(i + 1),
normalised by sum_i 1 / log2(i + 1).
"""

from __future__ import annotations

import numpy as np

from vlmface.backends.base import l2_normalize
from vlmface.probes.resample import mean_samples


def prompt_cosines(images: np.ndarray, prompts: np.ndarray, convention: str = "templates") -> np.ndarray:
    """(n,) cosine of each image to one term given its (m, dim) template prompts."""
    prompts = np.atleast_2d(prompts)
    if convention == "templates":
        return (images @ prompts.T).mean(axis=1)
    if convention == "embedding":
        return images @ l2_normalize(prompts.mean(axis=0))
    raise ValueError(f"convention {convention!r}: use 'templates' (mean of cosines) or 'embedding'")


def term_cosines(images: np.ndarray, prompts: np.ndarray, convention: str = "templates") -> np.ndarray:
    """(n, terms) cosines for (terms, m, dim) prompts: one matrix product for every term."""
    terms, m, dim = prompts.shape
    if convention == "templates":
        return (images @ prompts.reshape(terms * m, dim).T).reshape(len(images), terms, m).mean(axis=2)
    if convention == "embedding":
        return images @ l2_normalize(prompts.mean(axis=1)).T
    raise ValueError(f"convention {convention!r}: use 'templates' (mean of cosines) or 'embedding'")


def delta_cos(term_cos: np.ndarray, neutral_cos: np.ndarray, kind: str = "absolute") -> np.ndarray:
    """(n, terms) cos(image, term) - cos(image, neutral), in the paper's x100 units; `relative`:
    (cos(image, term) - cos(image, neutral)) / cos(image, neutral), x100 (the authors'
    analysis/fig_4+s2.py, DELTA = "relative")."""
    delta = term_cos - neutral_cos[:, None]
    if kind == "relative":
        return 100.0 * delta / neutral_cos[:, None]
    if kind != "absolute":
        raise ValueError(f"delta {kind!r}: use 'absolute' or 'relative'")
    return 100.0 * delta


def dimension_scores(deltas: np.ndarray, members: list[list[int]]) -> np.ndarray:
    """(n, dims): per image, the mean delta over each dimension's term columns."""
    return np.stack([deltas[:, cols].mean(axis=1) for cols in members], axis=1)


# ----- group means and their bootstrap -----------------------------------------------------------
def mean_ci(values: np.ndarray, n_boot: int, rng: np.random.Generator, confidence: float = 0.95,
            clusters: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, ci_lo, ci_hi), each (K,), of the columns of `values` (n, K): percentile bootstrap
    over images, or over whole clusters (identities) when `clusters` is given."""
    alpha = (1 - confidence) / 2
    mean = values.mean(axis=0) if len(values) else np.full(values.shape[1], np.nan)
    if len(values) == 0 or n_boot <= 0:
        return mean, np.full_like(mean, np.nan), np.full_like(mean, np.nan)
    lo, hi = np.quantile(mean_samples(values, n_boot, rng, clusters), [alpha, 1 - alpha], axis=0)
    return mean, lo, hi


# ----- markedness ---------------------------------------------------------------------------------
def unmarked(neutral_cos: np.ndarray, word_cos: np.ndarray) -> np.ndarray:
    """Per image: does the neutral prompt fit it better than its own group word? The share of
    True over a group's images, x100, is that group's markedness score (after Wolfe et al.)."""
    return neutral_cos > word_cos


# ----- ranking measures (Geyik et al. 2019) -----------------------------------------------------
def ranking(scores: np.ndarray) -> np.ndarray:
    """Image indices from the highest score down; ties keep image order (stable)."""
    return np.argsort(-np.asarray(scores, dtype=float), kind="stable")


def top_k_shares(codes: np.ndarray, order: np.ndarray, k: int, n_groups: int) -> np.ndarray:
    """(n_groups,) share of each group among the k highest-ranked images."""
    return np.bincount(codes[order[:k]], minlength=n_groups) / k


def skew_at_k(codes: np.ndarray, order: np.ndarray, k: int, desired: np.ndarray) -> np.ndarray:
    """(n_groups,) ln(top-k share / desired share); -inf for a group absent from the top k."""
    shares = top_k_shares(codes, order, k, len(desired))
    with np.errstate(divide="ignore"):
        return np.log(shares / desired)


def ndkl(codes: np.ndarray, order: np.ndarray, desired: np.ndarray) -> float:
    """Normalised discounted KL divergence of the ranking's prefix shares from `desired`."""
    n = len(order)
    onehot = np.zeros((n, len(desired)))
    onehot[np.arange(n), codes[order]] = 1.0
    shares = np.cumsum(onehot, axis=0) / np.arange(1, n + 1)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(shares > 0, shares * np.log(shares / desired), 0.0)
    weights = 1.0 / np.log2(np.arange(1, n + 1) + 1)
    return float(weights @ terms.sum(axis=1) / weights.sum())


def desired_shares(codes: np.ndarray, n_groups: int, target: str) -> np.ndarray:
    """'observed': the groups' shares of the ranked set; 'uniform': equal shares."""
    if target == "uniform":
        return np.full(n_groups, 1.0 / n_groups)
    return np.bincount(codes, minlength=n_groups) / len(codes)
