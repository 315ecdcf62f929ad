"""The category vote search by photo predicts a shopper's category with (``LOOKALIKE_SEARCH_
PREDICT_CATEGORY``): chosen by the full rebuild, stored next to the projection.

The vote itself (similarity/index/category_vote.py) needs no fitting: the query's nearest
products vote with their categories. What the catalog chooses is its size and the share of
the vote from which the prediction is confident, or that predicting does not pay at all
(similarity/evaluation/category_vote_cv.py): by 4-fold cross-validation inside the catalog,
each held-out product's augmented (shopper-style) views querying the other folds' products,
in the space refitted without the fold (the colour descriptor beside a view is its
product's). Without views the held-out products' own photos query. Beyond
``CV_MAX_PRODUCTS`` labelled products a seeded sample is scored.

``category_vote.json`` in the matrix directory holds the choice and the space it was chosen
in (written to a temp file, fsynced, renamed). A vote chosen in another space (a later
projection, another colour weight or vector key) is not used: search then predicts nothing
until the next full rebuild chooses again.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from django.conf import settings

from catalog.space import CV_MAX_PRODUCTS, AugmentedViews, Space, space_current, space_fit
from catalog.vectors import vector_key_current
from similarity import CategoryVote, VoteChoice, atomic_file, choose_category_vote, fsync_dir

logger = logging.getLogger(__name__)

VOTE_FILE = "category_vote.json"

_cache_lock = threading.Lock()
_cache: dict[tuple, dict | None] = {}


def vote_path() -> Path:
    return Path(settings.LOOKALIKE_MATRIX_DIR) / VOTE_FILE


def _space_stamp(space: Space) -> str:
    """What the vote was chosen in: the space (projection and colour blend) and the vectors."""
    return f"{space.name}|{space.key}|{space.metric}|{vector_key_current()}"


# ------------------------------------------------------------------------------ choosing


def _cv_rows(ids: np.ndarray, categories: Mapping[int, str], views: AugmentedViews | None) -> np.ndarray:
    """Rows of the labelled products scored (with views, those that have some), all or a
    seeded sample of ``CV_MAX_PRODUCTS``."""
    labelled = np.asarray([bool(categories.get(pid)) for pid in ids.tolist()], dtype=bool)
    if views is not None and views.of.size:
        labelled &= np.isin(ids, views.of)
    rows = np.flatnonzero(labelled)
    if rows.size <= CV_MAX_PRODUCTS:
        return rows
    return np.sort(np.random.default_rng(0).choice(rows, size=CV_MAX_PRODUCTS, replace=False))


def category_vote_choose(ids: np.ndarray, vectors: np.ndarray, colours: np.ndarray,
                         categories: Mapping[int, str], views: AugmentedViews | None,
                         space: Space) -> VoteChoice | None:
    """The vote for this catalog in ``space`` (see the module); None when fewer than two
    categories can be scored."""
    rows = _cv_rows(ids, categories, views)
    sub_ids, sub_vectors, sub_colours = ids[rows], vectors[rows], colours[rows]
    labels = [categories[pid] for pid in sub_ids.tolist()]
    if len(set(labels)) < 2:
        return None
    row_of = {pid: i for i, pid in enumerate(sub_ids.tolist())}
    if views is not None and views.of.size:
        asks = np.isin(views.of, sub_ids)
        query_vectors = views.vectors[asks]
        query_of = np.asarray([row_of[p] for p in views.of[asks].tolist()], dtype=np.int64)
    else:
        query_vectors, query_of = sub_vectors, np.arange(rows.size)

    def fold_space(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fold = space
        if space.projection is not None:  # refitted without the fold; nothing else is fitted
            seen = {int(sub_ids[r]): labels[r] for r in train.tolist()}
            fold_views = None if views is None else AugmentedViews(
                views.vectors[np.isin(views.of, list(seen))], views.of[np.isin(views.of, list(seen))])
            fold = space_fit(sub_ids, sub_vectors, seen, fold_views)
        return (fold.comparable(sub_vectors, sub_colours),
                fold.comparable(query_vectors, sub_colours[query_of]))

    return choose_category_vote(labels, query_of, fold_space)


# ------------------------------------------------------------------------------ persistence


def category_vote_save(choice: VoteChoice, space: Space) -> Path:
    """Write the choice and its space atomically (temp file, fsync, rename, fsync the dir)."""
    path = vote_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    vote = choice.vote
    body = {"space": _space_stamp(space), "predict": vote is not None,
            "size": None if vote is None else vote.size,
            "min_share": None if vote is None else vote.min_share, "summary": choice.summary()}
    with atomic_file(path, prefix=".v-") as handle:
        handle.write(json.dumps(body, indent=2).encode())
    return path


def category_vote_remove() -> None:
    path = vote_path()
    if path.exists():
        path.unlink()
        fsync_dir(path.parent)


def category_vote_refit(ids: np.ndarray, vectors: np.ndarray, colours: np.ndarray,
                        categories: Mapping[int, str], views: AugmentedViews | None,
                        space: Space) -> VoteChoice | None:
    """Choose the vote and store it (full rebuild only, after the projection is refitted);
    without a choice (prediction off, fewer than two categories) the stored one is removed."""
    choice = None
    if settings.LOOKALIKE_SEARCH_PREDICT_CATEGORY:
        choice = category_vote_choose(ids, vectors, colours, categories, views, space)
    if choice is None:
        category_vote_remove()
        return None
    category_vote_save(choice, space)
    logger.info("%s", choice.summary())
    return choice


# ------------------------------------------------------------------------------ reading


def _read() -> dict | None:
    """The stored choice, cached per process by the file's inode, size and mtime."""
    path = vote_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    try:
        stored: dict | None = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        logger.error("category vote %s unreadable (%s): no prediction", path, exc)
        stored = None
    with _cache_lock:
        _cache.clear()
        _cache[key] = stored
    return stored


def category_vote_current() -> CategoryVote | None:
    """The vote search predicts with now: the stored one when prediction is on and it was
    chosen in the current space, else None (no prediction)."""
    if not settings.LOOKALIKE_SEARCH_PREDICT_CATEGORY:
        return None
    stored = _read()
    if not stored or not stored.get("predict") or stored.get("space") != _space_stamp(space_current()):
        return None
    try:
        return CategoryVote(int(stored["size"]), float(stored["min_share"]))
    except (KeyError, TypeError, ValueError) as exc:
        logger.error("category vote %s invalid (%s): no prediction", vote_path(), exc)
        return None
