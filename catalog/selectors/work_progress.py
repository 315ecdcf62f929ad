"""Reads for following work in progress: imported products and rebuild runs. Nothing writes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db.models import Count

from catalog.models import Product, ProductPhoto, RebuildRun
from similarity import chunked

_CHUNK = 500


@dataclass(frozen=True)
class ProductsProgress:
    """How far a set of products has come. ``gone`` were deleted meanwhile."""

    total: int
    ready: int = 0
    failed: int = 0
    gone: int = 0

    @property
    def finished(self) -> int:
        return self.ready + self.failed + self.gone

    @property
    def pending(self) -> int:
        """Neither ready nor failed yet (pending or processing)."""
        return self.total - self.finished

    @property
    def done(self) -> bool:
        return self.pending == 0


def _progress(model: type[Product] | type[ProductPhoto], ids: Sequence[int]) -> ProductsProgress:
    unique = sorted(set(ids))
    counts: Counter[str] = Counter()
    for chunk in chunked(unique, _CHUNK):
        # Counted by the database: an import polls this twice a second for every product
        # (profiled: a row per product cost the importer 19 CPU-s in a 10,000 import).
        for status, n in (model._default_manager.filter(pk__in=chunk).order_by()
                          .values_list("status").annotate(n=Count("pk"))):
            counts[status] += n
    return ProductsProgress(total=len(unique), ready=counts[Product.Status.READY],
                            failed=counts[Product.Status.FAILED],
                            gone=len(unique) - sum(counts.values()))


def products_progress(*, product_ids: Sequence[int]) -> ProductsProgress:
    """Counts of ready / failed / deleted among ``product_ids``."""
    return _progress(Product, product_ids)


def further_photos_progress(*, photo_ids: Sequence[int]) -> ProductsProgress:
    """Counts of ready / failed / deleted among these further photos (``ProductPhoto``)."""
    return _progress(ProductPhoto, photo_ids)


def further_photos_failure_reasons(*, photo_ids: Sequence[int]) -> dict[str, list[ProductPhoto]]:
    """The failed further photos among ``photo_ids`` (with their product) grouped by reason."""
    groups: dict[str, list[ProductPhoto]] = {}
    for chunk in chunked(sorted(set(photo_ids)), _CHUNK):
        failed = (ProductPhoto.objects.filter(pk__in=chunk, status=Product.Status.FAILED)
                  .select_related("product").only("pk", "error_message", "product__name")
                  .order_by("pk"))
        for photo in failed:
            groups.setdefault(_reason(photo.error_message), []).append(photo)
    return dict(sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])))


def _reason(error_message: str) -> str:
    """A failure's reason: the error message's first word."""
    return (error_message or "unknown").split(":", 1)[0].strip() or "unknown"


def products_failure_reasons(*, product_ids: Sequence[int]) -> dict[str, list[Product]]:
    """The failed products among ``product_ids`` grouped by reason (the error's first word)."""
    groups: dict[str, list[Product]] = {}
    for chunk in chunked(sorted(set(product_ids)), _CHUNK):
        failed = (
            Product.objects.filter(pk__in=chunk, status=Product.Status.FAILED)
            .only("pk", "name", "category", "error_message")
            .order_by("pk")
        )
        for product in failed:
            groups.setdefault(_reason(product.error_message), []).append(product)
    return dict(sorted(groups.items(), key=lambda item: (-len(item[1]), item[0])))


def photos_existing_sha256(*, sha256s: Iterable[str]) -> dict[str, int]:
    """Which of these image hashes are already a photo in the catalog (a product's main photo
    or a further one), each with the id of a product holding it (main photos first)."""
    wanted = sorted({s for s in sha256s if s})
    found: dict[str, int] = {}
    for chunk in chunked(wanted, _CHUNK):
        for sha, product_id in ProductPhoto.objects.filter(image_sha256__in=chunk).values_list(
                "image_sha256", "product_id"):
            found[sha] = product_id
        found.update(
            Product.objects.filter(image_sha256__in=chunk).values_list("image_sha256", "pk")
        )
    return found


def rebuild_run_get(*, run_id: int) -> RebuildRun | None:
    return RebuildRun.objects.filter(pk=run_id).first()


def rebuild_run_latest(*, trigger: str) -> RebuildRun | None:
    """The most recent rebuild run started with this trigger."""
    return RebuildRun.objects.filter(trigger=trigger).order_by("-started_at", "-pk").first()
