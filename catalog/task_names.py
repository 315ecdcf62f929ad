"""The Celery tasks the catalog sends, by name, and the queue each one goes to.

The one place these names are spelled: ``workers/tasks.py`` registers its tasks under them,
``config/celery_app.py`` routes them, ``catalog.services.queue`` and ``catalog.services.beat``
send them. The catalog sends by name (``celery.current_app.send_task``) and never imports
the worker package. The names are those of messages already queued in Redis: never rename one.
"""

from __future__ import annotations

EMBED_QUEUE = "embed"
INDEX_QUEUE = "index"
REBUILD_QUEUE = "rebuild"

EMBED = "workers.tasks.embed_products"
INDEX = "workers.tasks.index_products"
REMOVE = "workers.tasks.remove_products"
REBUILD = "workers.tasks.rebuild_similarity"
RECONCILE = "workers.tasks.reconcile"
SWEEP_LOST = "workers.tasks.requeue_lost"
REBUILD_BLOCK = "workers.tasks.rebuild_block"

QUEUE_OF: dict[str, str] = {
    EMBED: EMBED_QUEUE,
    INDEX: INDEX_QUEUE,
    REMOVE: INDEX_QUEUE,
    REBUILD: INDEX_QUEUE,
    RECONCILE: INDEX_QUEUE,
    SWEEP_LOST: INDEX_QUEUE,
    REBUILD_BLOCK: REBUILD_QUEUE,
}
