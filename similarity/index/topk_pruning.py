"""``TopKPruning``: fitting a top-k index's basis and scanning the lower bounds it gives.

With a basis (``similarity.index.prune``) every row has low coordinates whose distance is a
lower bound of the true one; a pass scans only those (N x (d' + 1)) to find the rows it must
rank exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from similarity.index import topk_tuning as tuning
from similarity.index.exact import raw_sq, work_vectors
from similarity.index.prune import DIMS, FIT_SAMPLE, Basis, coord_blocks, fit_basis, low_coords, slack
from similarity.index.topk_state import TopKState


@dataclass(frozen=True)
class Bounds:
    """Lower bounds of s (queries x rows, float32) and each query's slack (d, e)."""

    lb: np.ndarray
    d: np.ndarray
    e: np.ndarray


class TopKPruning(TopKState):
    """Turning pruning on and off, the low coordinates a base writes, and the bounds scan."""

    @property
    def basis(self) -> Basis | None:
        """The basis whose low coordinates prune this index's scans (None: no pruning)."""
        return self._basis

    def enable_pruning(self, dims: int = DIMS) -> None:
        """Fit a basis (PCA of a sample of the live rows) and give every row its low
        coordinates; from now on scans are pruned (exactly, see similarity.index.prune)."""
        live = self._live()
        if live.size == 0:
            self._set_low(None, None)
            return
        pick = np.random.default_rng(0).choice(live, min(FIT_SAMPLE, live.size), replace=False)
        basis = fit_basis(self._work(np.sort(pick)), dims)
        blocks = (work_vectors(x, self._sq[off : off + x.shape[0]], self.metric)
                  for off, x in self._rows.blocks(tuning.LOW_BLOCK))
        low = np.concatenate([np.empty((0, basis.dims), np.float32),
                              *coord_blocks(basis, blocks)])
        self._set_low(low, basis)

    def disable_pruning(self) -> None:
        """Drop the basis: every scan reads all vectors again (the reference the pruned
        scans are measured against)."""
        self._set_low(None, None)

    def refit_for_base(self) -> None:
        """Before this state is written as a base: refit the basis on the live rows unless
        it was fitted on exactly them (no tail, no dead rows); below ``PRUNE_MIN_ROWS`` an
        index without a basis stays without."""
        if self._low is None and self._n < tuning.PRUNE_MIN_ROWS:
            return
        if self._low is not None and self._rows.n_tail == 0 and self._n == self._n_rows:
            return
        self.enable_pruning(DIMS if self._basis is None else self._basis.dims - 1)

    def low_blocks(self, size: int) -> Iterator[np.ndarray]:
        """The live rows' low coordinates in row order (like ``vector_blocks``)."""
        if self._low is None:
            return
        for off, z in self._low.blocks(size):
            alive = self._alive[off : off + z.shape[0]]
            yield z if alive.all() else z[alive]

    def _lower_bounds(self, q32: np.ndarray, q_sq: np.ndarray) -> Bounds:
        """Scanned lower bounds of s between the queries and every row (dead rows +inf),
        with the queries' slack (see similarity.index.prune)."""
        assert self._low is not None and self._basis is not None
        zq = low_coords(self._basis, work_vectors(q32, q_sq, self.metric))
        zq_sq = raw_sq(zq)
        n = self._n_rows
        # approx_s's euclidean steps, without copies: one GEMV/GEMM over the low rows
        parts = [zq @ z.T for _, z in self._low.blocks(max(n, 1))]
        lb = (parts[0] if len(parts) == 1 else
              np.concatenate(parts, axis=1) if parts else np.empty((q32.shape[0], 0), np.float32))
        lb *= -2.0
        lb += zq_sq.astype(np.float32)[:, None]
        lb += self._low_sq32[None, :n]
        d, e = slack(zq_sq, self._low_sq_max, self._basis.dims)
        return Bounds(lb, d, e)

    def _bound_rows(self) -> int:
        """Queries per pruned pass (their bounds against every row fit ``BOUND_BYTES``)."""
        return max(1, min(tuning.PASS_ROWS, tuning.BOUND_BYTES // (4 * max(self._n_rows, 1))))
