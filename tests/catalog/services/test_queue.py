"""Asking the workers whether any consumes the rebuild queue (the broadcast's replies are
faked here; tests/catalog/services/test_layout.py asks a real broker with no worker, and
tests/reliability/test_scale.py one with rebuild workers running)."""

from __future__ import annotations

import pytest
from celery import current_app

from catalog.services.queue import rebuild_workers_answering


class _Inspect:
    def __init__(self, replies: object) -> None:
        self.replies = replies

    def active_queues(self) -> object:
        if isinstance(self.replies, Exception):
            raise self.replies
        return self.replies


@pytest.mark.parametrize(("replies", "answering"), [
    (None, 0),  # nobody answered
    ({"embed@a": [{"name": "embed"}], "index@a": [{"name": "index"}]}, 0),
    ({"rebuild@a": [{"name": "rebuild"}], "rebuild@b": [{"name": "rebuild"}],
      "embed@a": [{"name": "embed"}]}, 2),
    ({"all@a": [{"name": "embed"}, {"name": "rebuild"}], "odd@b": None}, 1),
    (ConnectionError("broker down"), None),  # unknown: the writer keeps its patience
])
def test_counts_the_workers_that_consume_the_rebuild_queue(monkeypatch, replies, answering):
    monkeypatch.setattr(current_app.control, "inspect", lambda timeout: _Inspect(replies))
    assert rebuild_workers_answering() == answering
