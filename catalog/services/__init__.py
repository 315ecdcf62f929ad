"""Write side of the catalog (HackSoft style): every change to products and their neighbours.

- ``products``: create, update, delete, bulk create, image validation (admin forms use it);
- ``embedding``: images → vectors (the embed queue);
- ``indexing``: vectors → distance matrix → neighbour rows (the index queue, one writer);
- ``rebuild``: the periodic full rebuild (``rebuild_blocks``: its row blocks, top-k layout);
- ``sweeps``: the lost-task sweep and the reconcile sweep;
- ``beat``: the django-celery-beat schedule;
- ``queue``: tasks queued after commit, sent by name (``catalog.task_names``).

Not writes, so beside this package: ``catalog.vectors`` (what a vector is keyed by, from
settings only), ``catalog.space`` (the similarity space) and ``catalog.engine`` (the
per-process embedder and matrix store built from them).
"""
