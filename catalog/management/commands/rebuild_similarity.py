"""``manage.py rebuild_similarity [--async]``: the full rebuild, with progress."""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.management.commands._args import non_negative_float
from catalog.management.commands._progress import (
    WORKER_HINT,
    StepBars,
    follow_rebuild,
    progress_stream,
)
from catalog.models import RebuildRun
from catalog.services.rebuild import similarity_rebuild, similarity_rebuild_enqueue


class Command(BaseCommand):
    help = (
        "Re-embed stale products, rebuild the distance matrix and every neighbour list. Runs here "
        "with a progress bar, or with --async on the index worker, following its progress."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--async", dest="run_async", action="store_true",
                            help="queue the rebuild task for the workers and follow it")
        parser.add_argument("--timeout", type=non_negative_float, default=3600.0,
                            help="with --async: seconds to follow before giving up (default 3600)")
        parser.add_argument("--poll-interval", type=non_negative_float, default=0.5,
                            help=argparse.SUPPRESS)
        parser.add_argument("--no-progress", action="store_true", help="draw no progress bars")

    def handle(self, *args: Any, **options: Any) -> None:
        stream = progress_stream(options)
        show = not options["no_progress"]
        started = time.monotonic()
        if options["run_async"]:
            run = self._run_async(options, stream=stream, show=show)
        else:
            bars = StepBars(stream=stream, show=show)
            try:
                run = similarity_rebuild(trigger="command", progress=bars.update)
            except Exception as exc:
                raise CommandError(f"rebuild failed: {type(exc).__name__}: {exc}") from exc
            finally:
                bars.close()
        elapsed = time.monotonic() - started
        self.stdout.write(f"rebuild #{run.pk} {run.state} in {elapsed:.1f} s: {run.message}")

    def _run_async(self, options: dict[str, Any], *, stream: Any, show: bool) -> RebuildRun:
        trigger = f"command-{uuid.uuid4().hex[:12]}"
        similarity_rebuild_enqueue(trigger=trigger)
        timeout = options["timeout"]
        self.stdout.write(f"queued the rebuild (trigger {trigger}); following it (timeout {timeout:g} s)")
        run = follow_rebuild(trigger=trigger, stream=stream, timeout=timeout,
                             interval=options["poll_interval"], show=show)
        if run is None:
            raise CommandError(f"timed out after {timeout:g} s: no worker started the rebuild; "
                               f"{WORKER_HINT}")
        if run.state == RebuildRun.State.RUNNING:
            raise CommandError(
                f"timed out after {timeout:g} s: rebuild #{run.pk} still running "
                f"({run.step} {run.done}/{run.total}); it carries on in the worker"
            )
        if run.state == RebuildRun.State.FAILED:
            raise CommandError(f"rebuild #{run.pk} failed: {run.message}")
        return run
