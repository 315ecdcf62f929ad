"""Syncing the catalog with a shop's export (``import_catalog`` and the API's batch): each row is
kept as :func:`product_put` keeps one product, idempotent by SKU and photo hash, but a batch of
rows is written together (one read, one locked read and UPDATE of the changed products, one
INSERT of the new ones, in one transaction). A re-run of the same export changes nothing and
queues nothing; a new photo queues exactly that product; a failed row is reported with its
line and reason while the others go in; ``prune`` deletes the products the export no longer
names (their lists are refilled by the workers).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from catalog.models import Product
from catalog.services import queue
from catalog.services.manifest_rows import ParsedRows, RowFailure, RowRefused, SyncRow
from catalog.services.product_sync import product_create_new
from catalog.services.products import (
    CheckedImage,
    NewProduct,
    ProductChange,
    image_check,
    products_change_by_sku,
    products_create_by_sku,
    products_delete,
)
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
        if "\x00" in value:  # PostgreSQL refuses the whole statement
            raise RowRefused("invalid", f"{name} holds a NUL character")


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


def _refused(exc: ValidationError) -> RowRefused:
    """A service's refusal as the row's: its code (a field check's has none: "invalid")."""
    return RowRefused(str(getattr(exc, "code", None) or "invalid"), " ".join(exc.messages))


def _refused_row(row: SyncRow, exc: ValidationError) -> RowOutcome:
    """The row's failure, with the reason a service's refusal gives."""
    refused = _refused(exc)
    return RowOutcome(row.line, row.sku, "failed", refused.reason, refused.message)


def _photo_checked(row: SyncRow, data: bytes, sha: str) -> CheckedImage:
    try:
        return image_check(ContentFile(data, name=row.photo_label or "photo"), sha256=sha)
    except ValidationError as exc:
        raise _refused(exc) from exc


def _fingerprints(rows: Sequence[SyncRow]) -> dict[str, Fingerprint]:
    found = Product.objects.filter(sku__in=[r.sku for r in rows]).values_list(
        "sku", "pk", "name", "category", "image_sha256")
    return {sku: (pk, name, category, sha) for sku, pk, name, category, sha in found}


@dataclass
class _Plan:
    """What a batch writes: new products, and changes of existing ones (photos checked)."""

    fresh: list[tuple[SyncRow, NewProduct]] = field(default_factory=list)
    changes: list[tuple[SyncRow, ProductChange]] = field(default_factory=list)


@transaction.atomic
def _sync_batch(rows: Sequence[SyncRow], result: SyncResult) -> None:
    """One transaction per batch: the products it names read in one query, the changed ones
    written by one locked read and one UPDATE, the new ones by one INSERT; the batch's new
    photos are queued to be embedded together on its commit."""
    known = _fingerprints(rows)
    already = len(result.queued)
    plan = _Plan()
    # In SKU order: two batches naming the same SKUs lock them in one order, so neither waits
    # for the other in a cycle (PostgreSQL would abort one as a deadlock).
    for row in sorted(rows, key=lambda r: r.sku):
        outcome = _row_outcome(row, partial(_planned, row, known.get(row.sku), plan))
        if outcome is not None:
            result.outcomes.append(outcome)
    with queue.embeds_held():
        _change(plan.changes, result)
        _create(plan.fresh, result)
    queue.embed_enqueue(product_ids=result.queued[already:])


def _row_outcome(row: SyncRow, work: Callable[[], RowOutcome | None]) -> RowOutcome | None:
    """``work()``'s outcome for the row, or the row's failure with its reason."""
    try:
        _fields_check(row)
        return work()
    except ValidationError as exc:
        return _refused_row(row, exc)
    except RowRefused as exc:
        logger.info("sync: line %s (%s) failed: %s", row.line, row.sku, exc.message)
        return RowOutcome(row.line, row.sku, "failed", exc.reason, exc.message)


def _planned(row: SyncRow, before: Fingerprint | None, plan: _Plan) -> RowOutcome | None:
    """"unchanged" for a row that writes nothing (its photo hashed, not decoded); else None,
    the row added to ``plan``. A row without a photo keeps the stored one, which its
    ``photo_sha256`` must name."""
    if row.photo is None:
        if before is None or before[3] != row.photo_sha256:
            raise RowRefused("photo_required", "send the photo: no product with this SKU has "
                                               "the photo photo_sha256 names")
        sha, data = row.photo_sha256, b""
    else:
        data = _photo_bytes(row)
        sha = sha256_hex(data)
    if before is not None and before[1:] == (row.name, row.category, sha):
        return RowOutcome(row.line, row.sku, "unchanged")
    if before is None:
        plan.fresh.append((row, NewProduct(row.sku, row.name, row.category,
                                           _photo_checked(row, data, sha))))
    else:
        checked = None if before[3] == sha else _photo_checked(row, data, sha)
        plan.changes.append((row, ProductChange(row.sku, row.name, row.category, checked)))
    return None


def _change(changes: list[tuple[SyncRow, ProductChange]], result: SyncResult) -> None:
    if not changes:
        return
    applied = products_change_by_sku(changes=[change for _, change in changes])
    result.queued.extend(applied.queued)
    for row, _ in changes:
        if row.sku in applied.refused:
            result.outcomes.append(_refused_row(row, applied.refused[row.sku]))
        elif row.sku in applied.missing:
            result.outcomes.append(RowOutcome(
                row.line, row.sku, "failed", "deleted_meanwhile",
                "the product was deleted while this row was written: send the row again"))
        else:
            outcome = "changed" if row.sku in applied.changed else "unchanged"
            result.outcomes.append(RowOutcome(row.line, row.sku, outcome))


def _create(fresh: list[tuple[SyncRow, NewProduct]], result: SyncResult) -> None:
    """The new products in one INSERT. If another transaction created one of their SKUs or
    slugs meanwhile, each row again on its own, as a PUT that lost that race would be."""
    if not fresh:
        return
    try:
        products, refused = products_create_by_sku(items=[item for _, item in fresh])
    except IntegrityError:
        for row, item in fresh:
            outcome = _row_outcome(row, partial(_create_one, row, item, result))
            assert outcome is not None
            result.outcomes.append(outcome)
        return
    pks = {p.sku: p.pk for p in products}
    for row, _ in fresh:
        error = refused.get(row.sku)
        if error is not None:
            result.outcomes.append(_refused_row(row, error))
            continue
        result.queued.append(pks[row.sku])
        result.outcomes.append(RowOutcome(row.line, row.sku, "created"))


def _create_one(row: SyncRow, item: NewProduct, result: SyncResult) -> RowOutcome:
    """A new product on its own: "created", or "unchanged" (another request created the same)
    or ``sku_conflict`` (it created something else)."""
    product, outcome = product_create_new(sku=item.sku, name=item.name, category=item.category,
                                          checked=item.checked)  # in a savepoint of its own
    if outcome == "created":  # the other request queued its own
        result.queued.append(product.pk)
    return RowOutcome(row.line, row.sku, outcome)


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
