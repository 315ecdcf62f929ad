"""``manage.py import_garments DIR`` or ``--fashion-mnist``: bulk import, then follow the workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.management.commands._args import (
    add_follow_arguments,
    non_negative_int,
    positive_int,
)
from catalog.management.commands._progress import (
    WORKER_HINT,
    follow_products,
    new_bar,
    progress_stream,
)
from catalog.selectors.work_progress import (
    ProductsProgress,
    further_photos_failure_reasons,
    further_photos_progress,
    products_failure_reasons,
    products_progress,
)
from catalog.services.imports import (
    DEFAULT_BATCH,
    DIR_NAME_PATTERN,
    FASHION_MNIST_NAME_PATTERN,
    ImportResult,
    ImportSource,
    fashion_mnist_sources,
    garment_dir_sources,
    name_pattern_check,
    products_import,
)


class Command(BaseCommand):
    help = (
        "Import garment images as products (DIR: one category per subfolder; or --fashion-mnist), "
        "queue them to the workers and follow them until every product is ready or failed. "
        "In a category folder each file is a product, and so is each folder (always, no flag "
        "needed): the files under it are its photos in file-name order, the first the main "
        "photo, at most LOOKALIKE_MAX_PHOTOS; the folder's name gives the product's {stem} "
        "and SKU."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", nargs="?", type=Path,
                            help="a folder whose subfolders are categories holding image files "
                                 "(a product each) and product folders (a product each, its "
                                 "files its photos)")
        parser.add_argument("--fashion-mnist", action="store_true",
                            help="import Debian's Fashion-MNIST (dataset-fashion-mnist) instead")
        parser.add_argument("--split", choices=["train", "test"], default="train",
                            help="Fashion-MNIST split (default train)")
        parser.add_argument("--per-class", type=positive_int, default=200,
                            help="Fashion-MNIST garments per class (default 200; 10 classes)")
        parser.add_argument("--offset", type=non_negative_int, default=0,
                            help="skip this many garments of every class first (default 0)")
        parser.add_argument("--name-pattern", default=None,
                            help="product names from {stem}, {category} and {n} (default "
                                 f"{DIR_NAME_PATTERN!r} for DIR, {FASHION_MNIST_NAME_PATTERN!r} "
                                 "for Fashion-MNIST)")
        parser.add_argument("--skip-existing", action="store_true",
                            help="skip images whose sha256 is already in the catalog (a re-run "
                                 "adds nothing twice; a product folder's new photos join the "
                                 "product holding its others)")
        parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH,
                            help=f"files imported per transaction, a product folder never split "
                                 f"(default {DEFAULT_BATCH})")
        add_follow_arguments(parser, what="the products")

    def handle(self, *args: Any, **options: Any) -> None:
        sources, empty_folders, pattern = self._sources(options)
        try:
            name_pattern_check(pattern)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        stream = progress_stream(options)
        show = not options["no_progress"]

        total = len(sources) + len(empty_folders)
        with new_bar(stream=stream, total=total, desc="import", unit="file", show=show) as bar:
            def advance(result: ImportResult) -> None:
                bar.update(result.handled - bar.n)

            result = products_import(
                sources=sources, empty_folders=empty_folders, name_pattern=pattern,
                skip_existing=options["skip_existing"], batch_size=options["batch_size"],
                progress=advance,
            )
        self._report_import(result)
        if options["no_wait"] or not result.product_ids:
            state = products_progress(product_ids=result.product_ids)
            self._summary(result, state)
            if result.product_ids:
                self.stdout.write(f"not following the workers (--no-wait): {state.pending} pending")
            return
        self._follow(result, stream, options, show=show)

    def _follow(self, result: ImportResult, stream: TextIO, options: dict[str, Any], *,
                show: bool) -> None:
        """Follow the workers until every imported product is ready or failed."""
        ids = result.product_ids
        timeout = options["timeout"]
        self.stdout.write(
            f"following the workers until all {len(ids)} product(s) are ready or failed "
            f"(timeout {timeout:g} s)"
        )
        try:
            state = follow_products(ids, stream=stream, timeout=timeout,
                                    interval=options["poll_interval"], show=show)
        except KeyboardInterrupt:
            state = products_progress(product_ids=ids)
            self._summary(result, state)
            raise CommandError(
                f"interrupted: {state.pending} product(s) still pending; the workers carry on",
                returncode=130,
            ) from None
        self._summary(result, state)
        if not state.done:
            raise CommandError(
                f"timed out after {timeout:g} s: {state.pending} of {len(ids)} imported product(s) "
                f"still pending (ready {state.ready}, failed {state.failed}); {WORKER_HINT}"
            )

    # ------------------------------------------------------------------------------------

    def _sources(self, options: dict[str, Any]) -> tuple[list[ImportSource], list[str], str]:
        """The sources, the empty product folders and the name pattern."""
        directory: Path | None = options["directory"]
        if options["fashion_mnist"] == (directory is not None):
            raise CommandError("give either a DIR or --fashion-mnist (exactly one)")
        if options["fashion_mnist"]:
            try:
                sources = fashion_mnist_sources(
                    split=options["split"], per_class=options["per_class"], offset=options["offset"]
                )
            except (OSError, ValueError) as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(
                f"importing {len(sources)} Fashion-MNIST garment(s): {options['split']} split, "
                f"{options['per_class']} per class from offset {options['offset']}"
            )
            return sources, [], options["name_pattern"] or FASHION_MNIST_NAME_PATTERN
        assert directory is not None  # exactly one of DIR and --fashion-mnist, checked above
        try:
            found = garment_dir_sources(directory=directory)
        except OSError as exc:
            raise CommandError(str(exc)) from exc
        if found.loose:
            self.stderr.write(
                f"ignoring {len(found.loose)} file(s) directly in {directory} (no category): put "
                f"them in a category subfolder, e.g. {found.loose[0].name}"
            )
        if not found.sources:
            raise CommandError(f"no image files in category subfolders of {directory}")
        categories = sorted({s.category for s in found.sources})
        folders = (f" ({found.product_folders} product folder(s) among them)"
                   if found.product_folders else "")
        self.stdout.write(
            f"importing {len(found.sources)} file(s){folders} from {directory} into "
            f"{len(categories)} categor{'y' if len(categories) == 1 else 'ies'}: "
            f"{', '.join(categories)}"
        )
        return found.sources, found.empty_folders, options["name_pattern"] or DIR_NAME_PATTERN

    def _photos_summary(self, photo_ids: list[int]) -> None:
        """How the workers did with the further photos (embedded with their product)."""
        state = further_photos_progress(photo_ids=photo_ids)
        line = (f"further photos: added {state.total}, ready {state.ready}, failed {state.failed}, "
                f"pending {state.pending}")
        self.stdout.write(line + (f", deleted meanwhile {state.gone}" if state.gone else ""))
        if state.failed:
            self.stdout.write("further photos failed in the workers, by reason:")
            for reason, photos in further_photos_failure_reasons(photo_ids=photo_ids).items():
                self._examples(reason, [f"{p.product.name} (photo #{p.pk})" for p in photos])

    def _examples(self, reason: str, names: list[str]) -> None:
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        self.stdout.write(f"  {reason}: {len(names)}: {', '.join(names[:5])}{more}")

    def _report_import(self, result: ImportResult) -> None:
        photos = f" and {len(result.photo_ids)} further photo(s)" if result.photo_ids else ""
        self.stdout.write(
            f"created {len(result.product_ids)} product(s){photos}; skipped "
            f"{len(result.skipped)} already in the catalog; rejected {len(result.rejected)}"
        )
        for rejection in result.rejected:
            self.stdout.write(
                f"  rejected {rejection.label}: {rejection.reason}: {rejection.message}",
                style_func=self.style.WARNING,
            )

    def _summary(self, result: ImportResult, state: ProductsProgress) -> None:
        photos = f" with {len(result.photo_ids)} further photo(s)" if result.photo_ids else ""
        line = (
            f"summary: imported {len(result.product_ids)}{photos}, ready {state.ready}, "
            f"failed {state.failed}, pending {state.pending}"
        )
        if state.gone:
            line += f", deleted meanwhile {state.gone}"
        if result.skipped:
            line += f", skipped (already in the catalog) {len(result.skipped)}"
        if result.rejected:
            line += f", rejected {len(result.rejected)}"
        self.stdout.write(line)
        if state.failed:
            self.stdout.write("failed in the workers, by reason:")
            for reason, products in products_failure_reasons(product_ids=result.product_ids).items():
                self._examples(reason, [f"{p.name} (#{p.pk})" for p in products])
        if result.photo_ids:
            self._photos_summary(result.photo_ids)
        if result.rejected:
            reasons: dict[str, int] = {}
            for rejection in result.rejected:
                reasons[rejection.reason] = reasons.get(rejection.reason, 0) + 1
            grouped = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
            self.stdout.write(f"rejected before import, by reason: {grouped}")
