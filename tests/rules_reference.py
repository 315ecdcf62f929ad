"""The brute force of a list under the shop's rules, shared by the engine's and the catalog's
tests: every allowed product ranked by its canonical distance (float64 difference vectors,
then float32, as ``similarity.index.exact`` defines it) and id, then the pins placed rank by
rank (``similarity.index.rules`` states the rules)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from similarity.index.exact import final, raw_sq, work_vectors
from similarity.index.rules import ListRules


def canonical_to(vector: np.ndarray, rows: np.ndarray, metric: str) -> np.ndarray:
    a = work_vectors(vector[None, :], raw_sq(vector[None, :]), metric)
    b = work_vectors(rows, raw_sq(rows), metric)
    diff = b - a
    return final(np.einsum("ij,ij->i", diff, diff), metric)


def brute(vectors: Mapping[int, np.ndarray], candidates: set[int], vector: np.ndarray,
          own_id: int, rules: ListRules, metric: str, limit: int) -> list[tuple[int, float]]:
    """The list the rules define, from scratch."""
    pinned_here = {pid for rank, pid in rules.pins.items() if rank <= limit}
    allowed = sorted(pid for pid in candidates
                     if pid != own_id and pid not in rules.exclude and pid not in pinned_here)
    pinned_ids = sorted(pid for pid in pinned_here if pid in candidates and pid != own_id)
    ids = allowed + pinned_ids
    dist: dict[int, float] = {}
    if ids:
        d = canonical_to(np.asarray(vector, np.float32), np.stack([vectors[i] for i in ids]), metric)
        dist = {pid: float(x) for pid, x in zip(ids, d, strict=True)}
    nearest = sorted((dist[p], p) for p in allowed)[:limit]
    out, rest = [], iter(nearest)
    waiting = {rank: pid for rank, pid in rules.pins.items() if pid in pinned_ids}
    for rank in range(1, limit + 1):
        if rank in waiting:
            pid = waiting.pop(rank)
            out.append((pid, dist[pid]))
            continue
        nxt = next(rest, None)
        if nxt is None:
            break
        out.append((nxt[1], nxt[0]))
    out.extend((pid, dist[pid]) for _, pid in sorted(waiting.items()))
    return out[:limit]
