"""``manage.py import_catalog MANIFEST --images DIR [--prune] [--no-wait]``: sync the catalog
with a shop's export (CSV or JSON Lines), then follow the workers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.management.commands._args import add_follow_arguments, positive_int
from catalog.management.commands._progress import (
    WORKER_HINT,
    follow_products,
    new_bar,
    progress_stream,
)
from catalog.selectors.work_progress import ProductsProgress, products_progress
from catalog.services.catalog_sync import DEFAULT_SYNC_BATCH, SyncResult, catalog_sync
from catalog.services.manifest_rows import MANIFEST_FIELDS, ManifestError, manifest_rows


class Command(BaseCommand):
    help = (
        "Sync the catalog with a manifest (.csv with the header "
        f"{','.join(MANIFEST_FIELDS)}, or .jsonl with those keys; photo paths relative to "
        "--images): create, change or keep each product by SKU, queue only new photos, "
        "report failed rows by line, then follow the workers."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("manifest", type=Path, help="the manifest: a .csv or .jsonl file")
        parser.add_argument("--images", type=Path, required=True,
                            help="the folder the manifest's photo paths are relative to")
        parser.add_argument("--prune", action="store_true",
                            help="delete every product whose SKU the manifest does not name")
        parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_SYNC_BATCH,
                            help=f"rows per transaction (default {DEFAULT_SYNC_BATCH})")
        add_follow_arguments(parser, what="the changes")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            parsed = manifest_rows(path=options["manifest"], images=options["images"])
        except ManifestError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"syncing {len(parsed)} row(s) from {options['manifest']}")
        stream, show = progress_stream(options), not options["no_progress"]
        with new_bar(stream=stream, total=len(parsed), desc="rows", unit="row", show=show) as bar:
            def advance(result: SyncResult) -> None:
                bar.update(len(result.outcomes) - bar.n)

            try:
                result = catalog_sync(parsed=parsed, prune=options["prune"],
                                      batch_size=options["batch_size"], progress=advance)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            bar.update(len(parsed) - bar.n)
        self._report_rows(result)
        state = products_progress(product_ids=result.queued)
        if result.queued and not options["no_wait"]:
            state = self._follow(result, stream, options, show=show)
        elif result.queued:
            self.stdout.write(f"not following the workers (--no-wait): {state.pending} pending")
        self._summary(result, state)
        if not state.done and not options["no_wait"]:
            raise CommandError(
                f"timed out after {options['timeout']:g} s: {state.pending} of "
                f"{len(result.queued)} queued product(s) still pending; {WORKER_HINT}")

    def _follow(self, result: SyncResult, stream: TextIO, options: dict[str, Any], *,
                show: bool) -> ProductsProgress:
        self.stdout.write(f"following the workers until the {len(result.queued)} queued "
                          f"product(s) are ready or failed (timeout {options['timeout']:g} s)")
        try:
            return follow_products(result.queued, stream=stream, timeout=options["timeout"],
                                   interval=options["poll_interval"], show=show)
        except KeyboardInterrupt:
            state = products_progress(product_ids=result.queued)
            self._summary(result, state)
            raise CommandError(f"interrupted: {state.pending} product(s) still pending; the "
                               "workers carry on", returncode=130) from None

    def _report_rows(self, result: SyncResult) -> None:
        for failure in result.failures:
            self.stdout.write(f"  line {failure.line}"
                              + (f" ({failure.sku})" if failure.sku else "")
                              + f": {failure.reason}: {failure.message}",
                              style_func=self.style.WARNING)
        if result.deleted:
            shown = ", ".join(result.deleted[:10])
            more = f" and {len(result.deleted) - 10} more" if len(result.deleted) > 10 else ""
            self.stdout.write(f"deleted {len(result.deleted)} product(s) the manifest no longer "
                              f"names: {shown}{more}")

    def _summary(self, result: SyncResult, state: ProductsProgress) -> None:
        self.stdout.write(
            f"summary: created {result.count('created')}, changed {result.count('changed')}, "
            f"unchanged {result.count('unchanged')}, deleted {len(result.deleted)}, "
            f"failed {result.count('failed')}; queued {len(result.queued)}: ready {state.ready}, "
            f"failed in the workers {state.failed}, pending {state.pending}")
        if result.failures:
            reasons = Counter(f.reason for f in result.failures)
            grouped = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
            self.stdout.write(f"failed rows by reason: {grouped}")
