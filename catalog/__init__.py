"""The catalog app: products, their similar items, and the pipeline that computes them.

- Django's usual modules: ``models``, ``admin``, ``forms``, ``views`` (storefront pages),
  ``api`` (JSON endpoints), ``urls``, ``signals``, ``templatetags``, ``management/commands``;
  ``ratelimit`` (the search rate limit the views apply).
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
