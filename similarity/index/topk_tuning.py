"""Sizes and shares that tune ``TopKIndex``'s passes (read at call time, so tests can shrink
them): none changes a result, only how much is scanned or held at once."""

from __future__ import annotations

import numpy as np

NO_ID = -1
INT64_MAX = int(np.iinfo(np.int64).max)
MIN_GROWTH = 64
LOW_BLOCK = 16_384
PAIR_CHUNK = 4096
# Rows whose lists are recomputed (or products merged) per blocked pass over the vectors.
PASS_ROWS = 1024
#: A build (or a base written) of at least this many rows fits a basis and prunes its scans.
PRUNE_MIN_ROWS = 4096
# Bytes of lower bounds (queries x rows, float32) held at once by a pruned pass.
BOUND_BYTES = 256 * 2**20
# Seeds per query: the rows of smallest bound whose exact distances set the threshold.
SEEDS = 48
SEED_BLOCK = 32
# A pruned pass whose candidates exceed this share of the rows scans them all instead.
DENSE_SHARE = 0.25
