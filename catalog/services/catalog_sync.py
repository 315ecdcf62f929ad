"""Syncing the catalog with a shop's export (``import_catalog`` and the API's batch): every row
goes through :func:`product_put`, so a row is idempotent by SKU and photo hash. A re-run of the
same export changes nothing and queues nothing; a new photo queues exactly that product; a
failed row is reported with its line and reason while the others go in; ``prune`` deletes the
products the export no longer names (their lists are refilled by the workers).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction

from catalog.models import Product
from catalog.services import queue
from catalog.services.manifest_rows import ParsedRows, RowFailure, RowRefused, SyncRow
from catalog.services.product_sync import product_put
from catalog.services.products import image_check, product_update, products_delete
from catalog.services.skus import sku_validate
from catalog.vectors import sha256_hex
from similarity import ImageRejected, chunked

logger = logging.getLogger(__name__)

DEFAULT_SYNC_BATCH = 100
_NAME_MAX = Product._meta.get_field("name").max_length or 200
_CATEGORY_MAX = Product._meta.get_field("category").max_length or 64
Fingerprint = tuple[int, str, str, str]  # pk, name, category, image_sha256


@dataclass(frozen=True)
class RowOutcome:
    line: int
    sku: str
    outcome: str  # created, changed, unchanged or failed
    reason: str = ""
    message: str = ""


@dataclass
class SyncResult:
    outcomes: list[RowOutcome] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)  # products sent to be embedded
    deleted: list[str] = field(default_factory=list)  # SKUs pruned

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)

    @property
    def failures(self) -> list[RowOutcome]:
        return [o for o in self.outcomes if o.outcome == "failed"]


def _failed(failure: RowFailure) -> RowOutcome:
    return RowOutcome(failure.line, failure.sku, "failed", failure.reason, failure.message)


def _named(parsed: ParsedRows) -> list[tuple[str, int]]:
    """(SKU, line) of every row, failed rows included."""
    return [(r.sku, r.line) for r in parsed.rows] + [(f.sku, f.line) for f in parsed.failures]


def _duplicates(parsed: ParsedRows) -> dict[str, list[int]]:
    """SKUs named on more than one line, with their lines: none of those rows goes in, as the
    export does not say which one is right."""
    lines: dict[str, list[int]] = defaultdict(list)
    for sku, line in _named(parsed):
        if sku:
            lines[sku].append(line)
    return {sku: found for sku, found in lines.items() if len(found) > 1}


def _fields_check(row: SyncRow) -> None:
    try:
        sku_validate(row.sku)
    except ValidationError as exc:
        raise RowRefused("bad_sku", exc.messages[0]) from exc
    for name, value, limit in (("name", row.name, _NAME_MAX),
                               ("category", row.category, _CATEGORY_MAX)):
        if len(value) > limit:
            raise RowRefused("invalid", f"{name} is {len(value)} characters, over {limit}")


def _photo_bytes(row: SyncRow) -> bytes:
    assert row.photo is not None
    try:
        return row.photo()
    except ImageRejected as exc:
        raise RowRefused(exc.reason, exc.message) from exc
    except FileNotFoundError as exc:
        raise RowRefused("photo_missing", f"photo {row.photo_label!r} does not exist") from exc
    except OSError as exc:
        raise RowRefused("unreadable", f"cannot read photo {row.photo_label!r}: "
                                       f"{exc.strerror or exc}") from exc


def _keep_photo(row: SyncRow, before: Fingerprint | None) -> RowOutcome:
    """A row without a photo: the stored photo must be the one ``photo_sha256`` names."""
    if before is None or before[3] != row.photo_sha256:
        raise RowRefused("photo_required", "send the photo: no product with this SKU has the "
                                           "photo photo_sha256 names")
    if (before[1], before[2]) == (row.name, row.category):
        return RowOutcome(row.line, row.sku, "unchanged")
    product = Product.objects.get(pk=before[0])
    product_update(product=product, name=row.name, category=row.category)
    return RowOutcome(row.line, row.sku, "changed")


def _put(row: SyncRow, before: Fingerprint | None, result: SyncResult) -> RowOutcome:
    data = _photo_bytes(row)
    sha = sha256_hex(data)
    if before is not None and before[1:] == (row.name, row.category, sha):
        return RowOutcome(row.line, row.sku, "unchanged")  # nothing to decode or write
    try:
        checked = image_check(ContentFile(data, name=row.photo_label or "photo"), sha256=sha)
        product, outcome = product_put(sku=row.sku, name=row.name, category=row.category,
                                       image=checked)
    except ValidationError as exc:
        raise RowRefused(str(exc.code or "invalid"), " ".join(exc.messages)) from exc
    # A product another request created meanwhile with this photo ("unchanged") is queued
    # by that request.
    if outcome != "unchanged" and (before is None or before[3] != sha):
        result.queued.append(product.pk)
    return RowOutcome(row.line, row.sku, outcome)


def _fingerprints(rows: Sequence[SyncRow]) -> dict[str, Fingerprint]:
    found = Product.objects.filter(sku__in=[r.sku for r in rows]).values_list(
        "sku", "pk", "name", "category", "image_sha256")
    return {sku: (pk, name, category, sha) for sku, pk, name, category, sha in found}


@transaction.atomic
def _sync_batch(rows: Sequence[SyncRow], result: SyncResult) -> None:
    """One transaction per batch, a savepoint per row; the batch's new photos are queued to be
    embedded together on its commit (only rows whose savepoint committed count)."""
    known = _fingerprints(rows)
    already = len(result.queued)
    with queue.embeds_held():
        _sync_rows(rows, known, result)
    queue.embed_enqueue(product_ids=result.queued[already:])


def _sync_rows(rows: Sequence[SyncRow], known: dict[str, Fingerprint], result: SyncResult) -> None:
    # In SKU order: two batches naming the same new SKUs lock them in one order, so neither
    # waits for the other in a cycle (PostgreSQL would abort one as a deadlock).
    for row in sorted(rows, key=lambda r: r.sku):
        try:
            _fields_check(row)
            with transaction.atomic():
                before = known.get(row.sku)
                outcome = _put(row, before, result) if row.photo else _keep_photo(row, before)
        except ValidationError as exc:
            outcome = RowOutcome(row.line, row.sku, "failed", str(exc.code or "invalid"),
                                 " ".join(exc.messages))
        except RowRefused as exc:
            outcome = RowOutcome(row.line, row.sku, "failed", exc.reason, exc.message)
            logger.info("sync: line %s (%s) failed: %s", row.line, row.sku, exc.message)
        result.outcomes.append(outcome)


def _prune(keep: set[str]) -> list[str]:
    # Compared here, not in SQL: an export of 100,000 SKUs is too many query parameters.
    doomed = {pk: sku for pk, sku in Product.objects.values_list("pk", "sku") if sku not in keep}
    for chunk in chunked(sorted(doomed), DEFAULT_SYNC_BATCH):
        products_delete(product_ids=chunk)
    return sorted(doomed.values())


def catalog_sync(
    *,
    parsed: ParsedRows,
    prune: bool = False,
    batch_size: int = DEFAULT_SYNC_BATCH,
    progress: Callable[[SyncResult], None] | None = None,
) -> SyncResult:
    """Create, change or leave alone one product per row (by SKU; a photo is decoded only if its
    hash differs from the stored one). Rows refused while parsing and rows whose SKU is on
    several lines fail; the others go in. With ``prune``, every product whose SKU the export
    does not name (failed rows included) is deleted. ``progress`` is called after each batch."""
    if prune and not len(parsed):
        raise ValueError("the export has no rows: refusing to prune the whole catalog")
    result = SyncResult(outcomes=[_failed(f) for f in parsed.failures])
    twice = _duplicates(parsed)
    usable = []
    for row in parsed.rows:
        if row.sku in twice:
            lines = ", ".join(map(str, twice[row.sku]))
            result.outcomes.append(RowOutcome(row.line, row.sku, "failed", "duplicate_sku",
                                              f"SKU {row.sku!r} is on lines {lines}"))
        else:
            usable.append(row)
    for batch in chunked(usable, batch_size):
        _sync_batch(batch, result)
        if progress is not None:
            progress(result)
    if prune:
        result.deleted = _prune({sku for sku, _ in _named(parsed)})
    result.outcomes.sort(key=lambda o: o.line)
    return result
