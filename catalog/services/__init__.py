"""Write side of the catalog (HackSoft style): every change to products and their neighbours.
Reads live in ``catalog.selectors``.

- ``products``: create, update, delete, bulk create, image checks (admin forms use them);
- ``imports``: bulk imports from folders or Fashion-MNIST (``manage.py import_garments``);
- ``product_sync`` and ``skus``: products by the shop's SKU, idempotent by content;
  ``catalog_sync``: many at once from a shop's export (``manage.py import_catalog`` and the
  API's batch), read into rows by ``manifest_rows``;
- ``product_embedding``: images → vectors (the embed queue);
- ``indexing``: vectors → distance matrix → neighbour rows (the index queue), written by
  ``index_writer`` (one writer: ``locking``'s fenced Redis lock, then the store's flock) and
  ``neighbour_sync`` (the rows of exactly the lists that changed);
- ``rebuild``: the periodic full rebuild (``rebuild_blocks``: its row blocks, top-k layout);
- ``sweeps``: the lost-task sweep and the reconcile sweep;
- ``beat``: the django-celery-beat schedule;
- ``queue``: tasks queued after commit, sent by name (``catalog.task_names``).
"""
