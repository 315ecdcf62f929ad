"""Images → vectors, in batches (the embed queue). Idempotent: current vectors are skipped."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from catalog.deployment import database_label
from catalog.engine import embedder_get
from catalog.models import EmbeddedImage, Product, ProductPhoto
from catalog.services import queue
from catalog.vectors import colour_to_bytes, sha256_hex, vector_key_current, vector_to_bytes
from similarity import COLOUR_KEY, ImageEmbedder

logger = logging.getLogger(__name__)


@dataclass
class EmbedOutcome:
    """Ids by what happened to them: vector written, already current, or failed."""

    embedded: list[int] = field(default_factory=list)
    current: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)  # not in this deployment's database

    def counts(self) -> dict[str, int]:
        return {"embedded": len(set(self.embedded)), "current": len(self.current),
                "failed": len(self.failed), "unknown": len(self.unknown)}

    @property
    def to_index(self) -> list[int]:
        return sorted({*self.embedded, *self.current, *self.failed})


def _vector_is_current(photo: EmbeddedImage, key: str) -> bool:
    return (
        bool(photo.image_sha256)
        and photo.vector_key == key
        and photo.embedded_image_sha256 == photo.image_sha256
    )


def _product_id(photo: EmbeddedImage) -> int:
    return photo.product_id if isinstance(photo, ProductPhoto) else int(photo.pk)


def product_touch(photo: EmbeddedImage) -> None:
    """A further photo's vector changed: its product's ``updated_at`` moves, so search by
    photo reloads the product's vector (catalog.selectors.photo_search), and its committed
    lists no longer count as written for its vector (``indexed_as`` keys the main photo only):
    an index writer killed after publishing the product's new vector, before writing the
    lists, must not find the product settled when its task is redelivered."""
    if isinstance(photo, ProductPhoto):
        Product.objects.filter(pk=photo.product_id).update(updated_at=timezone.now(),
                                                           indexed_as="")


def _mark_failed(photo: EmbeddedImage, image_name: str, message: str) -> bool:
    """Failed is permanent for this image: the vector (of another image) is dropped too. A
    failed further photo leaves its product's vector; a failed main photo fails the product.
    The write and the product's touch commit together: a search loading between two commits
    would cache the touched product with the vector being dropped, and never reload it."""
    with transaction.atomic():
        failed = bool(
            type(photo)._default_manager.filter(pk=photo.pk, image=image_name).update(
                status=Product.Status.FAILED,
                error_message=message,
                vector=None,
                vector_key="",
                colour=None,
                colour_key="",
                embedded_image_sha256="",
                status_changed_at=timezone.now(),
            )
        )
        if failed:
            product_touch(photo)
    return failed


# (product or further photo, image name read at the start, image bytes)
_Job = tuple[EmbeddedImage, str, bytes]


def _failed(photo: EmbeddedImage, name: str, message: str, outcome: EmbedOutcome) -> None:
    """Mark ``photo`` failed; its product is failed (main photo) or re-indexed without it."""
    if _mark_failed(photo, name, message):
        done = outcome.embedded if isinstance(photo, ProductPhoto) else outcome.failed
        done.append(_product_id(photo))


def _read_image(photo: EmbeddedImage, outcome: EmbedOutcome) -> _Job | None:
    """The photo's image bytes, or None (a missing file marks it failed)."""
    name = photo.image.name or ""
    try:
        if not name:
            raise FileNotFoundError(name)
        with photo.image.storage.open(name, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        _failed(photo, name, "missing: the image file is missing from storage", outcome)
        return None
    return photo, name, data


def _stale_further_photos(products: Sequence[Product], key: str) -> dict[int, list[ProductPhoto]]:
    """The further photos, not failed, whose vector is not current, of the products not failed."""
    ids = [p.pk for p in products if p.status != Product.Status.FAILED]
    stale: dict[int, list[ProductPhoto]] = {}
    photos = (ProductPhoto.objects.filter(product_id__in=ids).exclude(status=Product.Status.FAILED)
              .defer("vector", "colour").order_by("pk"))
    for photo in photos:
        if not _vector_is_current(photo, key):
            stale.setdefault(photo.product_id, []).append(photo)
    return stale


def _jobs(product_ids: Sequence[int], key: str, outcome: EmbedOutcome) -> list[_Job]:
    """Read the images whose vector is not current: main photos, then further photos
    (products with nothing to embed go to outcome)."""
    products = list(
        Product.objects.filter(pk__in=list(product_ids)).defer("vector", "colour").order_by("pk")
    )
    outcome.unknown = sorted(set(product_ids) - {p.pk for p in products})
    further = _stale_further_photos(products, key)
    jobs: list[_Job] = []
    for product in products:
        photos: list[EmbeddedImage] = list(further.get(product.pk, []))
        if not (_vector_is_current(product, key) and product.status != Product.Status.FAILED):
            photos.insert(0, product)
        if not photos:
            outcome.current.append(product.pk)
        jobs.extend(job for photo in photos if (job := _read_image(photo, outcome)) is not None)
    return jobs


def _store_vector(job: _Job, vector: np.ndarray, colour: np.ndarray, key: str) -> bool:
    """Write the vector and the colour descriptor if the photo still has the image read at
    the start. A main photo's product turns processing (its list is written next); a further
    photo turns ready, and its product, listed as it was, is re-indexed with it."""
    photo, name, data = job
    sha = sha256_hex(data)
    # A ready product re-embedded only because the model or policy changed (same image)
    # stays ready: its old list stays visible until the new one is written.
    migrating = photo.status == Product.Status.READY and photo.embedded_image_sha256 == sha
    further = isinstance(photo, ProductPhoto)
    product_touch(photo)
    status: dict[str, object] = (
        {} if migrating
        else {"status": Product.Status.READY if further else Product.Status.PROCESSING,
              "status_changed_at": timezone.now()}
    )
    return bool(type(photo)._default_manager.filter(pk=photo.pk, image=name).update(
        vector=vector_to_bytes(vector), vector_key=key, image_sha256=sha,
        colour=colour_to_bytes(colour), colour_key=COLOUR_KEY,
        embedded_image_sha256=sha, error_message="", **status,
    ))


def _embed_chunk(embedder: ImageEmbedder, chunk: list[_Job], key: str,
                 outcome: EmbedOutcome) -> None:
    """Decode and check a chunk, mark the rejected ones failed, embed and store the rest
    (each vector with the colour descriptor of the same decoded picture)."""
    prepared = embedder.prepare_many([data for _, _, data in chunk], colour=True)
    good: list[tuple[_Job, np.ndarray, np.ndarray]] = []
    for job, item in zip(chunk, prepared, strict=True):
        if item.array is not None and item.colour is not None:
            good.append((job, item.array, item.colour))
            continue
        assert item.error is not None
        message = f"{item.error.reason}: {item.error.message}"
        logger.info("%s rejected: %s", job[0], message)
        _failed(job[0], job[1], message, outcome)
    if not good:
        return
    vectors = embedder.embed_arrays(np.stack([array for _, array, _ in good]))
    with transaction.atomic():  # one commit for the chunk, not one per product
        for (job, _, colour), vector in zip(good, vectors, strict=True):
            if _store_vector(job, vector, colour, key):
                outcome.embedded.append(_product_id(job[0]))


def products_embed_batch(*, product_ids: Sequence[int]) -> EmbedOutcome:
    """Embed the photos (main and further) of the products whose vector is not current for
    their image; queue nothing.

    Every write is guarded by the image file name read at the start, so a photo whose
    image changed (or that was deleted) meanwhile is left alone: its own task handles it.
    A rejected main image marks the product failed with the reason (never retried); a
    rejected further photo only that photo; a missing image file too. Database and storage
    errors other than a missing file propagate (the task retries them).
    """
    outcome = EmbedOutcome()
    key = vector_key_current()
    jobs = _jobs(product_ids, key, outcome)
    if jobs:
        embedder = embedder_get()
        for start in range(0, len(jobs), embedder.batch_size):
            _embed_chunk(embedder, jobs[start : start + embedder.batch_size], key, outcome)
    return outcome


def products_embed(*, product_ids: Sequence[int]) -> EmbedOutcome:
    """Embed a batch, then queue the index task for every product that needs indexing."""
    outcome = products_embed_batch(product_ids=product_ids)
    logger.info("embedded %(embedded)d, already current %(current)d, failed %(failed)d, "
                "unknown %(unknown)d", outcome.counts())
    if outcome.unknown:
        warn_unknown(outcome.unknown, task="embed")
    queue.index_enqueue(product_ids=outcome.to_index, robust=False)
    return outcome


def warn_unknown(product_ids: Sequence[int], *, task: str) -> None:
    """A task named products this database does not hold: say so, never a silent success."""
    logger.warning(
        "%s task: %d product(s) not in this deployment's database (%s, namespace %s): %s; "
        "deleted since, or a task of another deployment sharing this broker",
        task, len(product_ids), database_label(), settings.LOOKALIKE_NAMESPACE,
        list(product_ids)[:20],
    )
