"""catalog.search_vote: the vote the full rebuild chooses for a catalog where the answer is
known, stored atomically next to the projection and used only in the space it was chosen in."""

from __future__ import annotations

import json

import numpy as np
import pytest

from catalog.search_vote import (
    VOTE_FILE,
    category_vote_current,
    category_vote_refit,
    vote_path,
)
from catalog.space import AugmentedViews, space_current
from similarity import COLOUR_DIM, EMBEDDING_DIM

PER_CLASS, CLASSES = 40, 4


@pytest.fixture(autouse=True)
def matrix_dir(settings, tmp_path):
    settings.LOOKALIKE_MATRIX_DIR = tmp_path / "matrix"
    return settings.LOOKALIKE_MATRIX_DIR


def catalog(spread: float, *, noise_labels: bool = False, seed: int = 0):
    """Raw vectors around one centre per category (unit centres, ``spread`` noise, in the
    first 8 dimensions), ids 1..N; with ``noise_labels`` the categories are drawn at random."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(CLASSES), PER_CLASS)
    centres = rng.normal(size=(CLASSES, 8))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = np.zeros((codes.size, EMBEDDING_DIM), np.float32)
    vectors[:, :8] = centres[codes] + spread * rng.normal(size=(codes.size, 8))
    if noise_labels:
        codes = rng.integers(0, CLASSES, size=codes.size)
    ids = np.arange(1, codes.size + 1, dtype=np.int64)
    categories = {int(pid): f"c{c}" for pid, c in zip(ids.tolist(), codes.tolist(), strict=True)}
    return ids, vectors, np.zeros((ids.size, COLOUR_DIM), np.float32), categories


def test_a_catalog_whose_neighbours_mix_categories_gets_a_vote_stored_and_used():
    ids, vectors, colours, categories = catalog(0.3)
    choice = category_vote_refit(ids, vectors, colours, categories, None, space_current())
    assert choice is not None and choice.vote is not None
    assert choice.scores[(choice.vote.size, choice.vote.min_share)][0] > choice.baseline
    assert choice.queries == ids.size  # without views, every product's own photo queries
    stored = json.loads(vote_path().read_text())
    assert vote_path().name == VOTE_FILE and stored["predict"] is True
    assert category_vote_current() == choice.vote
    assert not list(vote_path().parent.glob(".v-*"))  # no temp file left behind


def test_noise_categories_store_no_prediction():
    ids, vectors, colours, categories = catalog(0.3, noise_labels=True, seed=3)
    choice = category_vote_refit(ids, vectors, colours, categories, None, space_current())
    assert choice is not None and choice.vote is None
    assert json.loads(vote_path().read_text())["predict"] is False
    assert category_vote_current() is None


def test_views_query_in_the_cross_validation_when_there_are_some():
    ids, vectors, colours, categories = catalog(0.3)
    views = AugmentedViews(np.repeat(vectors[:80], 2, axis=0), np.repeat(ids[:80], 2))
    choice = category_vote_refit(ids, vectors, colours, categories, views, space_current())
    assert choice is not None and choice.queries == 160  # two views each of the 80 with views


def test_prediction_off_or_one_category_removes_the_stored_vote(settings):
    ids, vectors, colours, categories = catalog(0.3)
    assert category_vote_refit(ids, vectors, colours, categories, None, space_current()) is not None
    settings.LOOKALIKE_SEARCH_PREDICT_CATEGORY = False
    assert category_vote_refit(ids, vectors, colours, categories, None, space_current()) is None
    assert not vote_path().exists()
    settings.LOOKALIKE_SEARCH_PREDICT_CATEGORY = True
    one = dict.fromkeys(categories, "Dress")
    assert category_vote_refit(ids, vectors, colours, one, None, space_current()) is None
    assert not vote_path().exists() and category_vote_current() is None


def test_a_vote_of_another_space_or_an_unreadable_file_is_not_used(settings):
    ids, vectors, colours, categories = catalog(0.3)
    category_vote_refit(ids, vectors, colours, categories, None, space_current())
    assert category_vote_current() is not None
    settings.LOOKALIKE_METRIC = "cosine"
    assert category_vote_current() is None
    settings.LOOKALIKE_METRIC = "euclidean"
    vote_path().write_text("{not json")
    assert category_vote_current() is None
