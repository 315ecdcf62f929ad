"""Tasks are queued only after the surrounding transaction commits (design notes, section 7).

Each queued send is a :class:`TaskSend` registered with ``transaction.on_commit``, so tests
can see what a service queued with ``django_capture_on_commit_callbacks``.

Test hook: with the setting ``LOOKALIKE_TEST_DUPLICATE_SENDS = n`` every task is sent
``1 + n`` times with one task id, as a broker redelivering it would (the reliability tests
prove that every task is idempotent). Never set it in production.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction

from catalog.task_names import EMBED, INDEX, REBUILD, REBUILD_BLOCK, REBUILD_QUEUE, REMOVE
from similarity import chunked

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskSend:
    """A task to send: ``task`` is the Celery task name, ``kwargs`` its keyword arguments."""

    task: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # on_commit(robust=True) logs a failed callback by its __qualname__, which an
        # instance lacks: without this a broker outage turned into an AttributeError.
        object.__setattr__(self, "__qualname__", f"TaskSend({self.task})")

    def __call__(self) -> None:
        copies = 1 + duplicate_sends()
        task_id = str(uuid.uuid4())
        for _ in range(copies):
            current_app.send_task(self.task, kwargs=self.kwargs, task_id=task_id)
        logger.debug("queued %s %s", self.task, self.kwargs)


def duplicate_sends() -> int:
    """Extra copies of every task to send (test hook, 0 unless the setting says)."""
    return max(0, int(settings.LOOKALIKE_TEST_DUPLICATE_SENDS))


def _send(task: str, *, robust: bool, **kwargs: Any) -> None:
    transaction.on_commit(TaskSend(task, kwargs), robust=robust)


# Set inside ``embeds_held``: embed_enqueue records ids there instead of queueing them.
_held_embeds: ContextVar[set[int] | None] = ContextVar("held_embeds", default=None)


@contextmanager
def embeds_held() -> Iterator[set[int]]:
    """Inside the block, ``embed_enqueue`` only records the ids: a caller that writes many
    products one service call at a time queues them itself, in batches (a task per product
    would embed one image at a time)."""
    held: set[int] = set()
    token = _held_embeds.set(held)
    try:
        yield held
    finally:
        _held_embeds.reset(token)


def embed_enqueue(*, product_ids: Iterable[int], robust: bool = True) -> None:
    """Queue embedding in batches (one task per ``LOOKALIKE_EMBED_BATCH`` products)."""
    ids = sorted(set(product_ids))
    held = _held_embeds.get()
    if held is not None:
        held.update(ids)
        return
    for chunk in chunked(ids, settings.LOOKALIKE_EMBED_BATCH):
        _send(EMBED, robust=robust, product_ids=chunk)


def index_enqueue(*, product_ids: Iterable[int], robust: bool = True) -> None:
    ids = sorted(set(product_ids))
    if ids:
        _send(INDEX, robust=robust, product_ids=ids)


def remove_enqueue(*, product_ids: Iterable[int], robust: bool = True) -> None:
    ids = sorted(set(product_ids))
    if ids:
        _send(REMOVE, robust=robust, product_ids=ids)


def rebuild_blocks_enqueue(*, block_ids: Iterable[int], metric: str, k: int) -> None:
    """One task per block of a distributed rebuild, sent at once (the writer then waits for
    them, so they must not wait for a commit)."""
    for block_id in block_ids:
        TaskSend(REBUILD_BLOCK, {"block_id": block_id, "metric": metric, "k": k})()


def rebuild_workers_answering(*, timeout: float = 1.0) -> int | None:
    """How many workers consuming the rebuild queue answer a broadcast within ``timeout``
    seconds; None if the broker could not be asked (then nothing is known)."""
    try:
        replies = current_app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception:  # any broker failure means "unknown", never a failed rebuild
        logger.warning("could not ask the workers which queues they consume", exc_info=True)
        return None
    return sum(any(q.get("name") == REBUILD_QUEUE for q in queues or ())
               for queues in replies.values())


def rebuild_enqueue(*, trigger: str, robust: bool = True) -> None:
    _send(REBUILD, robust=robust, trigger=trigger)
