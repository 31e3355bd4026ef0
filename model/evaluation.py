"""How well scores fit labels: AUC, accuracy, log loss and calibration, shared by training and the reports."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve: the chance a random positive outscores a random negative (ties count half)."""
    ranked = sorted(zip(scores, labels))
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mid_rank = (i + 1 + j) / 2  # tied scores share the mean of their 1-based ranks
        rank_sum += mid_rank * sum(label for _, label in ranked[i:j])
        i = j
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        raise ValueError("AUC needs both positive and negative labels")
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def accuracy(labels: Sequence[int], scores: Sequence[float], threshold: float = 0.5) -> float:
    """Share of labels the scores get right when a score at or above threshold means 1."""
    return sum(int(score >= threshold) == label for label, score in zip(labels, scores)) / len(labels)


def _labels_and_scores(labels: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores as float arrays of one non-zero length, scores within [0, 1]."""
    y, p = np.asarray(labels, dtype=float), np.asarray(scores, dtype=float)
    if y.shape != p.shape or y.ndim != 1 or not len(y):
        raise ValueError("labels and scores must be non-empty sequences of one length")
    if np.isnan(p).any() or (p < 0.0).any() or (p > 1.0).any():
        raise ValueError("scores must be probabilities in [0, 1]")
    return y, p


def log_loss(labels: Sequence[int], scores: Sequence[float], eps: float = 1e-15) -> float:
    """Mean binary cross-entropy of the labels under the scores, clipped to [eps, 1 - eps] to stay finite."""
    y, p = _labels_and_scores(labels, scores)
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def calibration(labels: Sequence[int], scores: Sequence[float], bins: int = 10) -> list[dict]:
    """Per non-empty equal-width score bin of [0, 1]: its edges, count, mean score and share of positives."""
    if bins < 1:
        raise ValueError("bins must be at least 1")
    y, p = _labels_and_scores(labels, scores)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bins are [lower, upper); a score of exactly 1.0 belongs to the last bin rather than a bin of its own.
    index = np.minimum(np.searchsorted(edges, p, side="right") - 1, bins - 1)
    rows = []
    for b in np.unique(index):
        inside = index == b
        rows.append({
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "count": int(inside.sum()),
            "mean_score": float(p[inside].mean()),
            "positive_share": float(y[inside].mean()),
        })
    return rows
