"""Images → vectors, in batches (the embed queue). Idempotent: current vectors are skipped."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from django.utils import timezone

from catalog.models import Product
from catalog.services import queue
from catalog.services.engine import embedder_get, sha256_hex, vector_key_current, vector_to_bytes

logger = logging.getLogger(__name__)


@dataclass
class EmbedOutcome:
    """Ids by what happened to them: vector written, already current, or failed."""

    embedded: list[int] = field(default_factory=list)
    current: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

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
            embedded_image_sha256="",
            status_changed_at=timezone.now(),
        )
    )


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
    products = list(
        Product.objects.filter(pk__in=list(product_ids)).defer("vector").order_by("pk")
    )
    todo: list[tuple[Product, str, bytes]] = []
    for product in products:
        if _vector_is_current(product, key) and product.status != Product.Status.FAILED:
            outcome.current.append(product.pk)
            continue
        name = product.image.name
        try:
            if not name:
                raise FileNotFoundError(name)
            with product.image.storage.open(name, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            if _mark_failed(product, name, "missing: the image file is missing from storage"):
                outcome.failed.append(product.pk)
            continue
        todo.append((product, name, data))

    if not todo:
        return outcome
    embedder = embedder_get()
    for start in range(0, len(todo), embedder.batch_size):
        chunk = todo[start : start + embedder.batch_size]
        prepared = embedder.prepare_many([data for _, _, data in chunk])
        good: list[tuple[Product, str, bytes, np.ndarray]] = []
        for (product, name, data), item in zip(chunk, prepared, strict=True):
            if item.error is not None:
                message = f"{item.error.reason}: {item.error.message}"
                logger.info("product %s rejected: %s", product.pk, message)
                if _mark_failed(product, name, message):
                    outcome.failed.append(product.pk)
            else:
                assert item.array is not None
                good.append((product, name, data, item.array))
        if not good:
            continue
        vectors = embedder.embed_arrays(np.stack([array for *_, array in good]))
        now = timezone.now()
        for (product, name, data, _), vector in zip(good, vectors, strict=True):
            sha = sha256_hex(data)
            # A ready product re-embedded only because the model or policy changed (same
            # image) stays ready: its old list stays visible until the new one is written.
            migrating = (
                product.status == Product.Status.READY and product.embedded_image_sha256 == sha
            )
            fields: dict[str, object] = {"status": Product.Status.PROCESSING,
                                         "status_changed_at": now}
            written = Product.objects.filter(pk=product.pk, image=name).update(
                vector=vector_to_bytes(vector),
                vector_key=key,
                image_sha256=sha,
                embedded_image_sha256=sha,
                error_message="",
                **({} if migrating else fields),
            )
            if written:
                outcome.embedded.append(product.pk)
    return outcome


def products_embed(*, product_ids: Sequence[int]) -> None:
    """Embed a batch, then queue the index task for every product that needs indexing."""
    outcome = products_embed_batch(product_ids=product_ids)
    logger.info(
        "embedded %d, already current %d, failed %d",
        len(outcome.embedded), len(outcome.current), len(outcome.failed),
    )
    queue.index_enqueue(product_ids=outcome.to_index, robust=False)
