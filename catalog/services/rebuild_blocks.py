"""The distributed full rebuild of the top-k layout: row blocks on the "rebuild" queue.

The index writer (holding the writer lock) writes the rebuild's inputs (the catalog's, or, when
lists stay inside categories, one per category whose partition is top-k) under the matrix
directory, records one ``RebuildBlock`` per ``LOOKALIKE_REBUILD_BLOCK_ROWS`` rows of each and
queues a task for each; any number of ``celery -A workers.app worker -Q rebuild`` processes, on any host
that sees the matrix directory, compute them (``rebuild_block_compute``). Each block's result
is written atomically beside the input; a worker killed mid-block has its task redelivered
(``acks_late``, ``task_reject_on_worker_lost``) and the block is simply computed again. The
writer waits, showing progress per block in the ``RebuildRun``; if no block finishes for
``LOOKALIKE_REBUILD_BLOCK_TIMEOUT`` seconds (no rebuild worker running, say) it computes the
remaining blocks itself. It then merges the blocks and publishes them under its fence.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from catalog.models import RebuildBlock, RebuildRun
from catalog.services import queue
from similarity import Block, failpoint, input_size, knn_block, load_block, save_block

logger = logging.getLogger(__name__)

_POLL = 0.5
Progress = Callable[[int, int], None]


def rebuild_blocks_plan(*, run: RebuildRun, inputs: Mapping[str, Path], metric: str,
                        k: int) -> list[RebuildBlock]:
    """Record the run's blocks of every input (keyed by category, "" across the catalog) and
    queue one task for each."""
    rows = settings.LOOKALIKE_REBUILD_BLOCK_ROWS
    planned = []
    for category, input_dir in inputs.items():
        n = input_size(input_dir)
        planned += [RebuildBlock(run=run, input_dir=str(input_dir), category=category, start=start,
                                 stop=min(n, start + rows)) for start in range(0, n, rows)]
    blocks = RebuildBlock.objects.bulk_create(planned)
    queue.rebuild_blocks_enqueue(block_ids=[b.pk for b in blocks], metric=metric, k=k)
    return blocks


def _compute(block: RebuildBlock, *, metric: str, k: int) -> None:
    RebuildBlock.objects.filter(pk=block.pk).update(
        state=RebuildBlock.State.RUNNING, worker=f"{socket.gethostname()} pid {os.getpid()}",
        attempts=F("attempts") + 1, started_at=timezone.now(),
    )
    input_dir = Path(block.input_dir)
    result = knn_block(input_dir, block.start, block.stop, k=k, metric=metric,
                       engine=settings.LOOKALIKE_KNN_ENGINE)
    failpoint("rebuild.block")
    save_block(input_dir, block.start, block.stop, result)
    RebuildBlock.objects.filter(pk=block.pk).update(state=RebuildBlock.State.DONE,
                                                    finished_at=timezone.now())


def rebuild_block_compute(*, block_id: int, metric: str, k: int) -> str:
    """The block task: compute one block (again, if it was already done: the same arrays)."""
    block = RebuildBlock.objects.select_related("run").filter(pk=block_id).first()
    if block is None:
        logger.warning("rebuild block %s: no such block", block_id)
        return "gone"
    if block.run.state != RebuildRun.State.RUNNING:
        return "run finished"
    if not Path(block.input_dir).is_dir():
        return "input gone"
    _compute(block, metric=metric, k=k)
    return "done"


def _waiting(run: RebuildRun) -> list[RebuildBlock]:
    return list(run.blocks.exclude(state=RebuildBlock.State.DONE).order_by("input_dir", "start"))


def rebuild_blocks_collect(*, run: RebuildRun, metric: str, k: int, fence: Callable[[], None],
                           progress: Progress) -> dict[str, list[Block]]:
    """Wait for every block (computing them here when the workers stall, or at once when no
    rebuild worker answers); their arrays, by category ("" across the catalog)."""
    total = run.blocks.count()
    patience = settings.LOOKALIKE_REBUILD_BLOCK_TIMEOUT
    if queue.rebuild_workers_answering() == 0:
        logger.warning("no rebuild worker answers: the writer computes the %d blocks itself", total)
        patience = 0
    last_change, last_left = time.monotonic(), total
    while left := _waiting(run):
        fence()  # a writer that lost its lock stops waiting
        if len(left) != last_left:
            last_change, last_left = time.monotonic(), len(left)
            progress(total - len(left), total)
        if time.monotonic() - last_change > patience:
            if patience:
                logger.warning("no rebuild block finished for %d s: the writer computes block %s",
                               patience, left[0])
            _compute(left[0], metric=metric, k=k)
            continue
        time.sleep(_POLL)
    progress(total, total)
    out: dict[str, list[Block]] = {}
    for b in run.blocks.order_by("category", "start"):
        out.setdefault(b.category, []).append(load_block(Path(b.input_dir), b.start, b.stop))
    return out
