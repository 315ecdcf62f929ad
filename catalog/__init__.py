"""The catalog app: products, their similar items, and the pipeline that computes them.

- Django's usual modules: ``models``, ``admin``, ``forms``, ``views`` (storefront pages),
  ``urls``, ``signals``, ``templatetags``, ``management/commands``; ``api/`` (the REST API
  at /api/v1/, its schema, keys, throttles and error format: its ``__init__`` is its map).
- ``services/``: every write (products, embedding, the index and its neighbour rows, the
  rebuild, the sweeps); ``selectors/``: every read.
- Between them and the engine (``similarity``, imported only through its public surface),
  built from settings alone: ``vectors`` (what a stored vector is keyed by, its bytes),
  ``space`` (the similarity space and its stored projection), ``augmented_views``
  (shopper-style views of the catalog's photos, for fitting the projection), ``engine`` (the
  per-process embedder and matrix store) and ``plain_sql`` (SQL the index's hot paths share).
- ``task_names`` (the Celery tasks the catalog sends, by name, and their queues) and
  ``deployment`` (who this deployment is: namespace, database, code version).
"""
