"""Zero-shot classification from embeddings: pure functions, no model in sight.

CLIP_benchmark convention: a class's text embedding is the renormalised mean of its
normalised template embeddings; logits = logit_scale * image @ classes (+ logit_bias for
SigLIP). CLIP: softmax over the classes. SigLIP: the sigmoid of each logit is that class's
own probability; they are renormalised to sum to one so every backend hands the scorer
a distribution, and the raw sigmoids are kept beside them.
"""

from __future__ import annotations

import numpy as np

from vlmface.backends.base import l2_normalize


def class_weights(text_embeddings: list[np.ndarray]) -> np.ndarray:
    """One (n_templates, dim) array per class -> (n_classes, dim) unit vectors."""
    return l2_normalize(np.stack([l2_normalize(e).mean(axis=0) for e in text_embeddings]))


def logits(image_embeddings: np.ndarray, weights: np.ndarray, logit_scale: float,
           logit_bias: float | None = None) -> np.ndarray:
    out = logit_scale * l2_normalize(image_embeddings) @ weights.T
    return out if logit_bias is None else out + logit_bias


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def probs_from_logits(z: np.ndarray, sigmoid: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities summing to 1 per row, raw sigmoids or None)."""
    if not sigmoid:
        return softmax(z), None
    log_sig = log_sigmoid(z)  # renormalised in log space: tiny sigmoids do not underflow to 0/0
    return softmax(log_sig), np.exp(log_sig)


def class_probs(image_embeddings: np.ndarray, weights: np.ndarray, logit_scale: float,
                logit_bias: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities summing to 1 per row, raw sigmoids or None) for raw image embeddings."""
    return probs_from_logits(logits(image_embeddings, weights, logit_scale, logit_bias), logit_bias is not None)
