"""Progress bars shared by the management commands (not a command: the name starts with "_").

Bars go to the command's stderr (``call_command(..., stderr=...)`` or the terminal), so
stdout stays clean for tables and JSON.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from tqdm import tqdm

from catalog.models import RebuildRun
from catalog.selectors.work_progress import ProductsProgress, products_progress, rebuild_run_latest

WORKER_HINT = "are the workers running? (celery -A workers.app worker -Q embed,index)"


def progress_stream(options: dict[str, Any]) -> TextIO:
    """Where bars are drawn: the stderr given to call_command, else the process' stderr."""
    return options.get("stderr") or sys.stderr


def new_bar(*, stream: TextIO, total: int, desc: str, unit: str = "it", show: bool = True) -> tqdm:
    return tqdm(
        total=total, desc=desc, unit=unit, file=stream, disable=not show,
        mininterval=0.2, dynamic_ncols=False, ncols=100, leave=True,
    )


def follow_products(
    product_ids: Sequence[int],
    *,
    stream: TextIO,
    timeout: float,
    interval: float = 0.5,
    show: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> ProductsProgress:
    """Poll the database until every product is ready, failed or deleted, or ``timeout`` passes.

    Returns the last counts (``.done`` tells which). A tqdm bar shows finished / total with the
    ready and failed counts.
    """
    deadline = time.monotonic() + timeout
    with new_bar(stream=stream, total=len(set(product_ids)), desc="workers", unit="product",
                 show=show) as bar:
        while True:
            state = products_progress(product_ids=product_ids)
            bar.set_postfix(ready=state.ready, failed=state.failed, refresh=False)
            bar.update(state.finished - bar.n)
            if state.done or time.monotonic() >= deadline:
                bar.refresh()
                return state
            sleep(max(0.0, min(interval, deadline - time.monotonic())))


class StepBars:
    """One bar per rebuild step ("embed", "matrix", "neighbours"), fed (step, done, total)."""

    def __init__(self, *, stream: TextIO, show: bool = True) -> None:
        self.stream = stream
        self.show = show
        self.step: str | None = None
        self.bar: tqdm | None = None

    def update(self, step: str, done: int, total: int) -> None:
        if step != self.step:
            self.close()
            self.step = step
            if step and step != "done":
                self.bar = new_bar(stream=self.stream, total=total, desc=step, unit="product",
                                   show=self.show)
        if self.bar is None:
            return
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def follow_rebuild(
    *,
    trigger: str,
    stream: TextIO,
    timeout: float,
    interval: float = 0.5,
    show: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> RebuildRun | None:
    """Poll the newest RebuildRun with ``trigger`` until it is no longer running or time is up.

    Returns the run as last read (``None`` if no worker ever started it).
    """
    deadline = time.monotonic() + timeout
    bars = StepBars(stream=stream, show=show)
    try:
        while True:
            run = rebuild_run_latest(trigger=trigger)
            if run is not None:
                bars.update(run.step, run.done, run.total)
                if run.state != RebuildRun.State.RUNNING:
                    return run
            if time.monotonic() >= deadline:
                return run
            sleep(max(0.0, min(interval, deadline - time.monotonic())))
    finally:
        bars.close()
