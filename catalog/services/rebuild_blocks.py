"""The distributed full rebuild of the top-k layout: row blocks on the "rebuild" queue.

The index writer (holding the writer lock) writes the rebuild's input under the matrix
directory, records one ``RebuildBlock`` per ``LOOKALIKE_REBUILD_BLOCK_ROWS`` rows and queues a
task for each; any number of ``celery -A workers.app worker -Q rebuild`` processes, on any host
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
from collections.abc import Callable
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


def rebuild_blocks_plan(*, run: RebuildRun, input_dir: Path, metric: str,
                        k: int) -> list[RebuildBlock]:
    """Record the run's blocks and queue one task for each."""
    n = input_size(input_dir)
    rows = settings.LOOKALIKE_REBUILD_BLOCK_ROWS
    RebuildRun.objects.filter(pk=run.pk).update(input_dir=str(input_dir))
    blocks = RebuildBlock.objects.bulk_create(
        RebuildBlock(run=run, start=start, stop=min(n, start + rows)) for start in range(0, n, rows)
    )
    queue.rebuild_blocks_enqueue(block_ids=[b.pk for b in blocks], metric=metric, k=k)
    return blocks


def _compute(block: RebuildBlock, input_dir: Path, *, metric: str, k: int) -> None:
    RebuildBlock.objects.filter(pk=block.pk).update(
        state=RebuildBlock.State.RUNNING, worker=f"{socket.gethostname()} pid {os.getpid()}",
        attempts=F("attempts") + 1, started_at=timezone.now(),
    )
    result = knn_block(input_dir, block.start, block.stop, k=k, metric=metric,
                       engine=settings.LOOKALIKE_KNN_ENGINE)
    failpoint("rebuild.block")
    save_block(input_dir, block.start, block.stop, result)
    RebuildBlock.objects.filter(pk=block.pk).update(state=RebuildBlock.State.DONE,
                                                    finished_at=timezone.now())


def rebuild_block_compute(*, block_id: int, metric: str, k: int) -> str:
    """The block task: compute one block (again, if it was already done: the same arrays)."""
    block = RebuildBlock.objects.select_related("run").filter(pk=block_id).first()
    if block is None or not block.run.input_dir:
        logger.warning("rebuild block %s: no such block or its run has no input", block_id)
        return "gone"
    if block.run.state != RebuildRun.State.RUNNING:
        return "run finished"
    input_dir = Path(block.run.input_dir)
    if not input_dir.is_dir():
        return "input gone"
    _compute(block, input_dir, metric=metric, k=k)
    return "done"


def _waiting(run: RebuildRun) -> list[RebuildBlock]:
    return list(run.blocks.exclude(state=RebuildBlock.State.DONE).order_by("start"))


def rebuild_blocks_collect(*, run: RebuildRun, input_dir: Path, metric: str, k: int,
                           fence: Callable[[], None], progress: Progress) -> list[Block]:
    """Wait for every block (computing them here when the workers stall); their arrays."""
    total = run.blocks.count()
    last_change, last_left = time.monotonic(), total
    while left := _waiting(run):
        fence()  # a writer that lost its lock stops waiting
        if len(left) != last_left:
            last_change, last_left = time.monotonic(), len(left)
            progress(total - len(left), total)
        if time.monotonic() - last_change > settings.LOOKALIKE_REBUILD_BLOCK_TIMEOUT:
            logger.warning("no rebuild block finished for %d s: the writer computes block %s",
                           settings.LOOKALIKE_REBUILD_BLOCK_TIMEOUT, left[0])
            _compute(left[0], input_dir, metric=metric, k=k)
            continue
        time.sleep(_POLL)
    progress(total, total)
    return [load_block(input_dir, b.start, b.stop) for b in run.blocks.order_by("start")]
