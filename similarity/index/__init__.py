"""Exact nearest-neighbour lists, kept up to date one product at a time.

Two layouts satisfy one interface (``layout.NeighbourIndex``), and ``layout`` moves a catalog
from the first to the second as it grows:

- ``dense``: ``DistanceMatrix``, the N x N layout (up to about 20,000 products), composed of
  ``dense_inputs`` (checking ids and vectors, shared by every layout), ``dense_storage`` (the
  arrays, their growth and the working-memory budget ``BLOCK_BYTES``), ``dense_distances``
  (distances and top-k of a block of rows), ``dense_updates`` (upsert and removal) and
  ``dense_reads`` (neighbours, queries, holders).
- ``topk``: ``TopKIndex``, vectors and exact top-k lists only (to a million products),
  composed of ``topk_rows`` (the vectors, memory-mapped base plus in-memory tail),
  ``topk_state`` (per-row arrays), ``topk_pruning`` (``prune``'s PCA lower bounds, so an add or
  a removal skips most of the catalog), ``topk_scan`` and ``topk_search`` (full and pruned
  exact searches), ``topk_merge`` (merging new products into other lists), ``topk_changes``
  (upserts, removals, ``ListChange``), ``topk_reads`` and ``topk_tuning`` (pass sizes).
- ``exact``: the arithmetic both layouts share, so that distances and ties agree bit for bit;
  ``inplace``: adopting a rebuilt state in place.
- ``block_knn``, ``block_files``: the all-pairs top-k in blocks, which many workers can share.
- ``dedup``: groups of near-duplicates in a list.
- ``rules``: a list under a shop's rules (exclusions, pins), for products inside the index
  or outside it (not listed).
- ``store``: ``MatrixStore``, the index on disk as ``.npz`` generations and fenced deltas,
  composed of ``store_listing`` (file names, directory scan), ``store_format`` (what each file
  holds), ``store_loader`` and ``store_replay`` (loading a base, replaying deltas),
  ``store_writer`` (logging operations, compaction, publishing a generation),
  ``store_publish`` (atomic publication, cleanup), ``store_lock`` (the single writer's flock),
  ``store_info`` and ``store_settings`` (``MatrixMeta``: what a store expects of its files).
"""
