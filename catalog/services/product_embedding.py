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
from catalog.models import Product
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
        return {"embedded": len(self.embedded), "current": len(self.current),
                "failed": len(self.failed), "unknown": len(self.unknown)}

    @property
    def to_index(self) -> list[int]:
        return sorted({*self.embedded, *self.current, *self.failed})


def _vector_is_current(product: Product, key: str) -> bool:
    return (
        bool(product.image_sha256)
        and product.vector_key == key
        and product.embedded_image_sha256 == product.image_sha256
    )


def _mark_failed(product: Product, image_name: str, message: str) -> bool:
    """Failed is permanent for this image: the vector (of another image) is dropped too."""
    return bool(
        Product.objects.filter(pk=product.pk, image=image_name).update(
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


# (product, image name read at the start, image bytes)
_Job = tuple[Product, str, bytes]


def _read_image(product: Product, outcome: EmbedOutcome) -> _Job | None:
    """The product's image bytes, or None (a missing file marks it failed)."""
    name = product.image.name or ""
    try:
        if not name:
            raise FileNotFoundError(name)
        with product.image.storage.open(name, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        if _mark_failed(product, name, "missing: the image file is missing from storage"):
            outcome.failed.append(product.pk)
        return None
    return product, name, data


def _jobs(product_ids: Sequence[int], key: str, outcome: EmbedOutcome) -> list[_Job]:
    """Read the images of the products whose vector is not current (others go to outcome)."""
    products = list(
        Product.objects.filter(pk__in=list(product_ids)).defer("vector", "colour").order_by("pk")
    )
    outcome.unknown = sorted(set(product_ids) - {p.pk for p in products})
    jobs: list[_Job] = []
    for product in products:
        if _vector_is_current(product, key) and product.status != Product.Status.FAILED:
            outcome.current.append(product.pk)
        elif (job := _read_image(product, outcome)) is not None:
            jobs.append(job)
    return jobs


def _store_vector(job: _Job, vector: np.ndarray, colour: np.ndarray, key: str) -> bool:
    """Write the vector and the colour descriptor if the product still has the image read at
    the start."""
    product, name, data = job
    sha = sha256_hex(data)
    # A ready product re-embedded only because the model or policy changed (same image)
    # stays ready: its old list stays visible until the new one is written.
    migrating = product.status == Product.Status.READY and product.embedded_image_sha256 == sha
    status: dict[str, object] = (
        {} if migrating
        else {"status": Product.Status.PROCESSING, "status_changed_at": timezone.now()}
    )
    return bool(Product.objects.filter(pk=product.pk, image=name).update(
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
        logger.info("product %s rejected: %s", job[0].pk, message)
        if _mark_failed(job[0], job[1], message):
            outcome.failed.append(job[0].pk)
    if not good:
        return
    vectors = embedder.embed_arrays(np.stack([array for _, array, _ in good]))
    with transaction.atomic():  # one commit for the chunk, not one per product
        for (job, _, colour), vector in zip(good, vectors, strict=True):
            if _store_vector(job, vector, colour, key):
                outcome.embedded.append(job[0].pk)


def products_embed_batch(*, product_ids: Sequence[int]) -> EmbedOutcome:
    """Embed the products whose vector is not current for their image; queue nothing.

    Every write is guarded by the image file name read at the start, so a product whose
    image changed (or that was deleted) meanwhile is left alone: its own task handles it.
    A rejected image marks the product failed with the reason (never retried); a missing
    image file too. Database and storage errors other than a missing file propagate
    (the task retries them).
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
