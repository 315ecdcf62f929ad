"""The clean quality experiment's figures: precision and mAP of ranked lists, how much of the
plain visual order a space keeps inside a category, and one table row per configuration."""

from __future__ import annotations

import numpy as np

from bench.common import sq_distances
from bench.experiments.clean_inputs import Input, K
from bench.experiments.clean_spaces import Space
from similarity.embedding.projection import l2_normalise
from similarity.evaluation.fashion_mnist import CLASS_NAMES
from similarity.evaluation.metrics import QualityReport, evaluate


def _row_ranks(d: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(d, axis=1, kind="stable"), axis=1, kind="stable").astype(np.float64)


def visual_agreement(zq: np.ndarray, zc: np.ndarray, rq: np.ndarray, rc: np.ndarray,
                     yq: np.ndarray, yc: np.ndarray, *, same_set: bool = False) -> float:
    """How much of the plain visual order survives inside a category.

    Per query, the Spearman correlation between its distances to the catalog items of its
    own category in the configuration's space (``zq``, ``zc``) and in the plain cosine space
    of the raw vectors (``rq``, ``rc``); the mean over queries. 1 = the same order as plain
    cosine. A class-aware projection can raise precision while ordering the garments of a
    category almost arbitrarily; this shows it. ``same_set``: queries are the catalog itself
    (each item's own entry is left out).
    """
    total, count = 0.0, 0
    for cls in np.unique(yq):
        qi, ci = np.flatnonzero(yq == cls), np.flatnonzero(yc == cls)
        if ci.size < 3:
            continue
        d1 = sq_distances(zq[qi], zc[ci])
        d0 = sq_distances(l2_normalise(rq[qi]), l2_normalise(rc[ci]))
        if same_set:
            keep = ~np.eye(qi.size, dtype=bool)
            d1, d0 = d1[keep].reshape(qi.size, -1), d0[keep].reshape(qi.size, -1)
        a, b = _row_ranks(d1), _row_ranks(d0)
        a -= a.mean(1, keepdims=True)
        b -= b.mean(1, keepdims=True)
        corr = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))
        total += float(corr.sum())
        count += qi.size
    return total / count


def score(ranked: np.ndarray, data_labels: np.ndarray, query_labels: np.ndarray) -> QualityReport:
    """Precision and mAP at K of ranked lists (-1 = an empty place)."""
    padded = np.where(ranked >= 0, data_labels[np.maximum(ranked, 0)], -1)
    return evaluate(query_labels, padded, catalog_labels=data_labels, k=K)


def _cat(entry: tuple) -> str:
    cls, s = entry
    return f"{CLASS_NAMES[int(cls)]} {s.precision:.2f}"


def quality_row(name: str, inp: Input, space: Space, report: QualityReport, **extra: object) -> dict:
    """One configuration's row of the table (``extra``: more columns)."""
    return {
        "configuration": name,
        "preprocessing": inp.label,
        "space": space.name,
        "params": space.params,
        "catalog_cv_precision_at_10": space.cv,
        "precision_at_10": report.precision,
        "map_at_10": report.map,
        "worst": _cat(report.worst()),
        "best": _cat(report.best()),
        "n": report.n,
        **extra,
    }
