from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """Tasks run in-process here; whatever they queue is recorded, not sent."""
    from catalog.services import queue

    sent: list[queue.TaskSend] = []
    monkeypatch.setattr(queue.TaskSend, "__call__", lambda self: sent.append(self))
    return sent
