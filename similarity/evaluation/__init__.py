"""How good the lists are, and the garments to measure it on.

- ``metrics``: category precision@k, colour share, re-find recall, from distances or vectors.
- ``kfold``: cross-validation inside a catalog (a fitted transform never sees its test fold).
- ``fashion_mnist``: Debian's Fashion-MNIST as dark-on-white shop photos.
- ``shots``: dyed catalog shots and shopper-style re-shoots of a garment (scale, tilt,
  background, JPEG), for the quality benchmarks and the projection's training views.
- ``contact_sheet``: a picture of queries and their neighbours.
"""
