"""Write side of the catalog (HackSoft style): every change to products and their neighbours.

- ``products``: create, update, delete, bulk create, image validation (admin forms use it);
- ``embedding``: images → vectors (the embed queue);
- ``indexing``: vectors → distance matrix → neighbour rows (the index queue, one writer);
- ``rebuild``: the periodic full rebuild and the reconcile sweep;
- ``beat``: the django-celery-beat schedule;
- ``engine``: per-process embedder / matrix store and the settings they are built from;
- ``queue``: tasks queued after commit.
"""
