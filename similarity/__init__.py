"""Lookalike's similarity engine: garment photos in, exact nearest-neighbour lists out.

Nothing in this package imports Django, reads an environment variable or, at import time,
imports TensorFlow: the caller passes every path and setting. The subpackages, from the
bottom up:

- ``similarity.model``: the network itself. The ImageNet weights read without torch
  (``weights``), MobileNetV2 in torchvision's layout in Keras (``network``), its identity and
  shapes (``spec``), the conversion to LiteRT (``convert``, ``quantize``: the only modules
  that import TensorFlow) and the converted model's cache on disk (``cache``).
- ``similarity.embedding``: a photo becomes a vector. Decoding and checking under limits
  (``images``), finding the garment (``framing``), preprocessing policies (``preprocess``),
  the colour descriptor (``colour``), LiteRT inference (``runtime``), all of it for a batch
  (``embedder``), and the category-aware projection learned from a catalog (``projection``).
- ``similarity.index``: vectors become exact neighbour lists, kept incrementally. The dense
  N x N layout (``dense`` and its ``dense_*`` parts), the top-k layout (``topk`` and its
  ``topk_*`` parts, with the pruned scans of ``prune``), the exact arithmetic they share
  (``exact``), the choice between them (``layout``), the all-pairs build in blocks for a
  distributed rebuild (``block_knn``, ``block_files``), near-duplicate groups (``dedup``) and
  the on-disk ``.npz`` store with its deltas and writer lock (``store`` and its ``store_*``
  parts), one index per category for lists inside it (``partitions``), a product's own
  rules applied to its list (``rules``), and a query's category predicted by a vote of its
  nearest products (``category_vote``).
- ``similarity.evaluation``: how good the lists are. Retrieval metrics (``metrics``),
  cross-validation inside a catalog (``kfold``), the colour weight and the category vote it
  chooses with it (``colour_cv``, ``category_vote_cv``), Debian's Fashion-MNIST
  (``fashion_mnist``), shop-style and shopper-style shots of a garment (``shots``) and
  contact sheets (``contact_sheet``).

Beside them: ``errors``, ``atomic`` (atomic file writes), ``batching``, ``threads`` (math
thread caps), ``failpoints`` (crash-test hooks, inert unless configured) and ``cli``
(``python -m similarity``).

The names below are the surface the catalog uses; it imports nothing else from here.
"""

from __future__ import annotations

from similarity.atomic import atomic_file, fsync_dir
from similarity.batching import chunked
from similarity.embedding.colour import COLOUR_DIM, COLOUR_KEY, blend_colour
from similarity.embedding.embedder import ImageEmbedder
from similarity.embedding.images import ImageLimits, check_image, load_image
from similarity.embedding.preprocess import get_policy
from similarity.embedding.projection import (
    BlendProjection,
    fit_blend,
    fit_robust_blend,
    l2_normalise,
    load_blend,
    read_blend,
    save_blend,
)
from similarity.embedding.runtime import default_threads
from similarity.errors import ImageRejected, MatrixError, MatrixFullError, SimilarityError, StaleMatrixError
from similarity.evaluation.category_vote_cv import VoteChoice, choose_category_vote
from similarity.evaluation.colour_cv import ColourChoice, choose_colour_weight
from similarity.evaluation.contact_sheet import SheetRow, SheetTile, draw_sheet
from similarity.evaluation.fashion_mnist import CLASS_NAMES, balanced_indices, load_split, to_photo
from similarity.evaluation.kfold import Transform, kfold_report
from similarity.evaluation.metrics import QualityReport, evaluate
from similarity.evaluation.shots import reshoot, shopper_shot
from similarity.failpoints import configure as configure_failpoints
from similarity.failpoints import failpoint
from similarity.index.block_files import load_block, save_block
from similarity.index.block_knn import (
    Block,
    discard_input,
    discard_stale_inputs,
    input_size,
    knn_block,
)
from similarity.index.category_vote import CategoryVote
from similarity.index.dedup import duplicate_groups, first_distinct
from similarity.index.layout import LAYOUTS, NeighbourIndex
from similarity.index.partition_store import PartitionedStore, partitions_remove
from similarity.index.partitions import (
    NO_CATEGORY,
    PartitionedIndex,
    group_by_category,
    partitions_present,
)
from similarity.index.product_distance import PhotoGroups, product_vectors
from similarity.index.rules import (
    ListRules,
    nearest_allowed,
    pair_distances,
    pins_applied,
    pins_live,
    rows_entered,
    ruled_list,
)
from similarity.index.store import TEMP_PREFIX, TEMP_SUFFIX, ConcurrentWriterError, MatrixMeta, MatrixStore
from similarity.model.cache import ensure_model
from similarity.model.spec import EMBEDDING_DIM, PRECISIONS, ModelIdentity, Precision
from similarity.model.weights import WEIGHTS_SHA256
from similarity.threads import limit_math_threads

__all__ = [
    "CLASS_NAMES",
    "COLOUR_DIM",
    "COLOUR_KEY",
    "EMBEDDING_DIM",
    "LAYOUTS",
    "NO_CATEGORY",
    "PRECISIONS",
    "TEMP_PREFIX",
    "TEMP_SUFFIX",
    "WEIGHTS_SHA256",
    "BlendProjection",
    "Block",
    "CategoryVote",
    "ColourChoice",
    "ConcurrentWriterError",
    "ImageEmbedder",
    "ImageLimits",
    "ImageRejected",
    "ListRules",
    "MatrixError",
    "MatrixFullError",
    "MatrixMeta",
    "MatrixStore",
    "ModelIdentity",
    "NeighbourIndex",
    "PartitionedIndex",
    "PartitionedStore",
    "PhotoGroups",
    "Precision",
    "QualityReport",
    "SheetRow",
    "SheetTile",
    "SimilarityError",
    "StaleMatrixError",
    "Transform",
    "VoteChoice",
    "atomic_file",
    "balanced_indices",
    "blend_colour",
    "check_image",
    "choose_category_vote",
    "choose_colour_weight",
    "chunked",
    "configure_failpoints",
    "default_threads",
    "discard_input",
    "discard_stale_inputs",
    "draw_sheet",
    "duplicate_groups",
    "ensure_model",
    "evaluate",
    "failpoint",
    "first_distinct",
    "fit_blend",
    "fit_robust_blend",
    "fsync_dir",
    "get_policy",
    "group_by_category",
    "input_size",
    "kfold_report",
    "knn_block",
    "l2_normalise",
    "limit_math_threads",
    "load_blend",
    "load_block",
    "load_image",
    "load_split",
    "nearest_allowed",
    "pair_distances",
    "partitions_present",
    "partitions_remove",
    "pins_applied",
    "pins_live",
    "product_vectors",
    "read_blend",
    "reshoot",
    "rows_entered",
    "ruled_list",
    "save_blend",
    "save_block",
    "shopper_shot",
    "to_photo",
]
