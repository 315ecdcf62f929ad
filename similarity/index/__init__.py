"""Exact nearest-neighbour lists, kept up to date one product at a time.

- ``exact``: the arithmetic every layout shares, so that ties and distances agree bit for bit.
- ``dense``: ``DistanceMatrix``, the N x N layout (up to about 20,000 products).
- ``topk``: ``TopKIndex``, vectors and exact top-k lists only (to a million products), with
  ``prune``'s lower bounds to skip most of the catalog on an add or a removal.
- ``layout``: the ``NeighbourIndex`` both satisfy, and moving from dense to top-k.
- ``block_knn``, ``block_files``: the all-pairs top-k in blocks that many workers can share.
- ``dedup``: groups of near-duplicates in a list.
- ``store``: ``MatrixStore``, the ``.npz`` generations and fenced deltas on disk, their
  atomic publication and the single writer's lock.
- ``inplace``: adopting a rebuilt state in place.
"""
