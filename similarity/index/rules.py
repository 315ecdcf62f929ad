"""A list under a shop's rules: the exact nearest allowed products, with pinned products at
their ranks.

The index (either layout) holds only the products that may appear in lists. A product's own
rules narrow its list further: products excluded from it, and products pinned at a rank. Its
list is then, rank by rank from 1 to ``limit``: the product pinned at that rank if there is
one, otherwise the nearest remaining allowed product, ordered by (distance, id) like every
list. Pins past ``limit`` do not apply. Pins of products the index does not hold (not listed,
excluded everywhere, deleted) wait until it holds them again. Pins placed past the end of a
short list close it up in rank order, so a list has no holes.

The same function serves products outside the index (not listed themselves: they keep a list
of listed products) and products inside it with rules of their own.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from similarity.errors import MatrixError
from similarity.index.exact import canonical, raw_sq, work_vectors
from similarity.index.layout import NeighbourIndex

Neighbours = list[tuple[int, float]]


@dataclass(frozen=True)
class ListRules:
    """One product's own rules: ``exclude`` never appear in its list, ``pins`` maps a rank
    (1-based) to the product shown there."""

    exclude: frozenset[int] = frozenset()
    pins: Mapping[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if any(rank < 1 for rank in self.pins):
            raise MatrixError(f"pin ranks start at 1, got {sorted(self.pins)}")
        if len(set(self.pins.values())) != len(self.pins):
            raise MatrixError("a product can be pinned at one rank only")
        if set(self.pins.values()) & self.exclude:
            raise MatrixError("a product cannot be both pinned and excluded")

    def __bool__(self) -> bool:
        return bool(self.exclude or self.pins)

    def depth(self, limit: int) -> int:
        """How many nearest products a list of ``limit`` may need before its rules apply."""
        return limit + len(self.exclude) + len(self.pins)


def pair_distances(vector: Any, vectors: np.ndarray, metric: str) -> np.ndarray:
    """The canonical float32 distances (``similarity.index.exact``) of one vector to each row
    of ``vectors``: the very values the index's lists and queries report."""
    a = np.asarray(vector, np.float32).reshape(1, -1)
    b = np.asarray(vectors, np.float32).reshape(-1, a.shape[1])
    wa = work_vectors(a, raw_sq(a), metric)
    wb = work_vectors(b, raw_sq(b), metric)
    return canonical(np.repeat(wa, len(wb), axis=0), wb, metric)


def pins_live(index: NeighbourIndex, own_id: int, rules: ListRules,
              limit: int) -> list[tuple[int, int]]:
    """(rank, id) of the pins that apply now, by rank: ranks within ``limit``, products the
    index holds, never the product itself."""
    return sorted((rank, pid) for rank, pid in rules.pins.items()
                  if rank <= limit and pid != own_id and pid in index)


def _pinned(index: NeighbourIndex, vector: Any, own_id: int, rules: ListRules,
            limit: int) -> dict[int, tuple[int, float]]:
    """rank -> (id, distance) of the pins that apply now (``pins_live``)."""
    live = pins_live(index, own_id, rules, limit)
    if not live:
        return {}
    vectors = np.stack([index.vector(pid) for _, pid in live])
    dist = pair_distances(vector, vectors, index.metric)
    return {rank: (pid, float(d)) for (rank, pid), d in zip(live, dist, strict=True)}


def place_pins(nearest: Neighbours, pinned: Mapping[int, tuple[int, float]],
               limit: int) -> Neighbours:
    """Ranks 1..``limit``: the pin of that rank, else the next of ``nearest``; pins left over
    when ``nearest`` runs out follow in rank order."""
    out: Neighbours = []
    rest = iter(nearest)
    waiting = dict(sorted(pinned.items()))
    for rank in range(1, limit + 1):
        if rank in waiting:
            out.append(waiting.pop(rank))
            continue
        entry = next(rest, None)
        if entry is None:
            break
        out.append(entry)
    out.extend(waiting.values())
    return out[:limit]


def nearest_allowed(index: NeighbourIndex, vector: Any, *, own_id: int, rules: ListRules,
                    k: int, limit: int) -> Neighbours:
    """The ``k`` nearest products of the index to ``vector``, leaving out the product itself,
    the ones it excludes and the ones it pins within ``limit`` (they take their own ranks)."""
    pinned = (pid for rank, pid in rules.pins.items() if rank <= limit)
    skip = {own_id, *rules.exclude, *pinned}
    return [(int(pid), float(d)) for pid, d in index.query(vector, k=k, exclude=sorted(skip))]


def ruled_list(index: NeighbourIndex, vector: Any, *, own_id: int, rules: ListRules,
               limit: int) -> Neighbours:
    """The product's list of ``limit`` under its rules (see the module's docstring)."""
    nearest = nearest_allowed(index, vector, own_id=own_id, rules=rules, k=limit, limit=limit)
    return place_pins(nearest, _pinned(index, vector, own_id, rules, limit), limit)


def pins_applied(index: NeighbourIndex, vector: Any, *, own_id: int, rules: ListRules,
                 nearest: Neighbours, limit: int) -> Neighbours:
    """``place_pins`` for a caller that chose ``nearest`` itself (e.g. after collapsing
    near-duplicates among them)."""
    return place_pins(nearest, _pinned(index, vector, own_id, rules, limit), limit)


def rows_entered(row_vectors: np.ndarray, thresholds: Sequence[tuple[float, int] | None],
                 new_ids: np.ndarray, new_vectors: np.ndarray, metric: str,
                 skips: Sequence[Collection[int]] = ()) -> np.ndarray:
    """For each row (a list made under rules), whether any new product ranks before its
    threshold = (distance, id) of the last entry it chose by distance; ``None``: the list has
    room, so any new product enters. ``skips[i]``: ids that never enter row i (the product
    itself, the ones it excludes). One pass of canonical distances per new vector."""
    out = np.zeros(len(thresholds), bool)
    if not thresholds:
        return out
    rows = np.asarray(row_vectors, np.float32).reshape(len(thresholds), -1)
    t_dist = np.array([np.inf if t is None else t[0] for t in thresholds], np.float64)
    t_id = np.array([np.iinfo(np.int64).max if t is None else t[1] for t in thresholds], np.int64)
    work = work_vectors(rows, raw_sq(rows), metric)
    for pid, vec in zip(np.asarray(new_ids).tolist(), np.asarray(new_vectors, np.float32),
                        strict=True):
        one = vec[None, :]
        d = canonical(work, np.broadcast_to(work_vectors(one, raw_sq(one), metric), work.shape),
                      metric).astype(np.float64)
        hit = (d < t_dist) | ((d == t_dist) & (pid < t_id))
        for i in np.flatnonzero(hit & ~out).tolist():
            out[i] = not skips or pid not in skips[i]
    return out
