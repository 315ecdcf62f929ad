"""Thin Celery tasks: fetch by id, call a catalog service.

Every task is ``acks_late`` (a task whose worker dies is redelivered) and idempotent.
Unexpected errors (database, storage, broker, a matrix writer conflict) are retried with
exponential backoff; a rejected image is permanent: the service records it on the product
and the task succeeds, and ``ImageRejected`` is never retried should it escape.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.core.exceptions import ValidationError

from catalog import task_names
from similarity import ImageRejected, MatrixFullError, StaleMatrixError

RETRY: dict[str, Any] = {
    "acks_late": True,
    "autoretry_for": (Exception,),
    "dont_autoretry_for": (ImageRejected, ValidationError, MatrixFullError, StaleMatrixError),
    "retry_backoff": 2,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 8,
}


def _ids(product_ids: list[int] | tuple[int, ...] | int) -> list[int]:
    if isinstance(product_ids, int):
        return [product_ids]
    return [int(pid) for pid in product_ids]


@shared_task(name=task_names.EMBED, **RETRY)
def embed_products(product_ids: list[int]) -> dict[str, int]:
    from catalog.services.product_embedding import products_embed

    return products_embed(product_ids=_ids(product_ids)).counts()


@shared_task(name=task_names.INDEX, **RETRY)
def index_products(product_ids: list[int]) -> dict[str, int]:
    from catalog.services.indexing import index_apply_counted

    return index_apply_counted(product_ids=_ids(product_ids))


@shared_task(name=task_names.REMOVE, **RETRY)
def remove_products(product_ids: list[int]) -> int:
    from catalog.services.indexing import index_remove

    return len(index_remove(product_ids=_ids(product_ids)))


@shared_task(name=task_names.REBUILD, **{**RETRY, "max_retries": 2})
def rebuild_similarity(trigger: str = "beat") -> int:
    from catalog.services.rebuild import similarity_rebuild

    return similarity_rebuild(trigger=trigger).pk


@shared_task(name=task_names.RECONCILE, **RETRY)
def reconcile() -> dict[str, int]:
    from catalog.services.sweeps import reconcile as reconcile_service

    return reconcile_service()


@shared_task(name=task_names.SWEEP_LOST, **{**RETRY, "max_retries": 0})
def requeue_lost() -> dict[str, int]:
    from catalog.services.sweeps import products_requeue_lost

    return products_requeue_lost()


@shared_task(name=task_names.REBUILD_BLOCK, **RETRY)
def rebuild_block(block_id: int, metric: str, k: int) -> str:
    from catalog.services.rebuild_blocks import rebuild_block_compute

    return rebuild_block_compute(block_id=block_id, metric=metric, k=k)
