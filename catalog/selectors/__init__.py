"""Read side of the catalog (HackSoft style): every read that is more than a one-line query.
Nothing here writes.

- ``storefront``: products and their stored neighbour lists, as pages, the API and the admin
  show them;
- ``photo_search``: search by photo (the ready products' vectors cached per process, or the
  stored top-k index searched in place);
- ``index_membership``: which products belong in the index, are in it or wait for it, and
  their vectors (the index writer's reads);
- ``neighbour_rows``: the stored neighbour rows as the index writer compares them;
- ``work_progress``: how far imported products and rebuild runs have come;
- ``retrieval_quality``: precision@k and mAP@k of the catalog, in-sample and held-out;
- ``broker_state``: this deployment's queue lengths and what its workers are doing.
"""
