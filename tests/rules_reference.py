"""The brute force of a list under the shop's rules, shared by the engine's and the catalog's
tests: every allowed product ranked by its canonical distance (float64 difference vectors,
then float32, as ``similarity.index.exact`` defines it) and id, then the pins placed rank by
rank (``similarity.index.rules`` states the rules)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from similarity.index.exact import final, raw_sq, work_vectors
from similarity.index.rules import ListRules


def canonical_to(vector: np.ndarray, rows: np.ndarray, metric: str) -> np.ndarray:
    a = work_vectors(vector[None, :], raw_sq(vector[None, :]), metric)
    b = work_vectors(rows, raw_sq(rows), metric)
    diff = b - a
    return final(np.einsum("ij,ij->i", diff, diff), metric)


def same_category(candidates: set[int], category_of: Mapping[int, str] | None,
                  category: str | None) -> set[int]:
    """The candidates of ``category`` (all of them when lists span the catalog: None)."""
    if category_of is None or category is None:
        return set(candidates)
    return {pid for pid in candidates if category_of.get(pid, "") == category}


def _ranked(vectors: Mapping[int, np.ndarray], candidates: set[int], vector: np.ndarray,
            own_id: int, rules: ListRules, metric: str, limit: int,
            ) -> tuple[list[int], list[int], dict[int, float]]:
    """(every allowed product by (distance, id), the pinned products that apply by rank, the
    distance of each)."""
    pinned_here = {pid for rank, pid in rules.pins.items() if rank <= limit}
    allowed = sorted(pid for pid in candidates
                     if pid != own_id and pid not in rules.exclude and pid not in pinned_here)
    pinned = [pid for _, pid in sorted(rules.pins.items())
              if pid in pinned_here and pid in candidates and pid != own_id]
    ids = allowed + pinned
    dist: dict[int, float] = {}
    if ids:
        d = canonical_to(np.asarray(vector, np.float32), np.stack([vectors[i] for i in ids]), metric)
        dist = {pid: float(x) for pid, x in zip(ids, d, strict=True)}
    return [p for _, p in sorted((dist[p], p) for p in allowed)], pinned, dist


def _placed(nearest: list[int], pinned: list[int], rules: ListRules, dist: Mapping[int, float],
            limit: int) -> list[tuple[int, float]]:
    """Ranks 1..limit: the pin of that rank, else the next of ``nearest``; pins left over
    close the list up in rank order."""
    out, rest = [], iter(nearest)
    waiting = {rank: pid for rank, pid in rules.pins.items() if pid in pinned}
    for rank in range(1, limit + 1):
        if rank in waiting:
            out.append(waiting.pop(rank))
            continue
        nxt = next(rest, None)
        if nxt is None:
            break
        out.append(nxt)
    out.extend(pid for _, pid in sorted(waiting.items()))
    return [(pid, dist[pid]) for pid in out[:limit]]


def brute(vectors: Mapping[int, np.ndarray], candidates: set[int], vector: np.ndarray,
          own_id: int, rules: ListRules, metric: str, limit: int,
          category_of: Mapping[int, str] | None = None) -> list[tuple[int, float]]:
    """The list the rules define, from scratch; with ``category_of`` (id -> category, "" for
    none), only products of the product's own category are candidates."""
    if category_of is not None:
        candidates = same_category(candidates, category_of, category_of.get(own_id, ""))
    nearest, pinned, dist = _ranked(vectors, candidates, vector, own_id, rules, metric, limit)
    return _placed(nearest[:limit], pinned, rules, dist, limit)


@dataclass(frozen=True)
class Copies:
    """What makes two products near-duplicates: their main photos' raw vectors within
    ``threshold`` cosine distance, or the same image sha."""

    raw: Mapping[int, np.ndarray]
    sha: Mapping[int, str]
    threshold: float

    def same(self, a: int, b: int) -> bool:
        if self.sha.get(a) and self.sha.get(a) == self.sha.get(b):
            return True
        u, v = (np.asarray(self.raw[x], np.float64) for x in (a, b))
        cosine = float(u @ v) / max(float(np.linalg.norm(u) * np.linalg.norm(v)), 1e-300)
        return 1.0 - cosine <= self.threshold


def brute_collapsed(vectors: Mapping[int, np.ndarray], candidates: set[int], vector: np.ndarray,
                    own_id: int, rules: ListRules, metric: str, limit: int, copies: Copies,
                    category_of: Mapping[int, str] | None = None) -> list[tuple[int, float]]:
    """``brute`` with near-duplicates collapsed: the pins that apply stay at their ranks; walking
    the allowed products by (distance, id), one is left out when it is a near-duplicate of a
    pinned product or of one kept before it, until the places the pins leave are filled."""
    if category_of is not None:
        candidates = same_category(candidates, category_of, category_of.get(own_id, ""))
    nearest, pinned, dist = _ranked(vectors, candidates, vector, own_id, rules, metric, limit)
    kept: list[int] = []
    for pid in nearest:
        if len(kept) == limit - len(pinned):
            break
        if not any(copies.same(pid, other) for other in pinned + kept):
            kept.append(pid)
    return _placed(kept, pinned, rules, dist, limit)


# --- The same brute force over the catalog's database (the catalog's and the reliability
# tests). Django is imported inside the functions: the engine's tests use ``brute`` alone.

LIMIT = 10


def rules_of(product_id: int) -> ListRules:
    """The product's own pins and exclusions, as stored."""
    from catalog.models import ListRule

    rows = ListRule.objects.filter(product_id=product_id)
    return ListRules(
        exclude=frozenset(r.target_id for r in rows if r.kind == ListRule.Kind.EXCLUDE),
        pins={r.rank: r.target_id for r in rows if r.kind == ListRule.Kind.PIN},
    )


def out_of_lists() -> set[int]:
    """Products that may appear in no list: not listed, or excluded everywhere."""
    from catalog.models import ListRule, Product

    return set(Product.objects.filter(listed=False).values_list("pk", flat=True)) | set(
        ListRule.objects.filter(kind=ListRule.Kind.EXCLUDE_EVERYWHERE)
        .values_list("target_id", flat=True))


def product_vectors_of(products: list) -> dict[int, np.ndarray]:
    """Each product's vector (the tests' raw space) from all its photos: the main photo's
    vector and those of its further photos that count (a vector of the current model, not
    failed), combined by ``similarity.product_vectors``."""
    from catalog.models import ProductPhoto
    from catalog.vectors import vector_key_current
    from similarity import PhotoGroups, product_vectors

    further: dict[int, list[np.ndarray]] = {}
    for owner, blob in (ProductPhoto.objects.filter(vector__isnull=False,
                                                    vector_key=vector_key_current())
                        .exclude(status=ProductPhoto.Status.FAILED)
                        .order_by("product_id", "pk").values_list("product_id", "vector")):
        further.setdefault(owner, []).append(np.frombuffer(bytes(blob), "<f4"))
    out: dict[int, np.ndarray] = {}
    for p in products:
        photos = [np.frombuffer(bytes(p.vector), "<f4"), *further.get(p.pk, [])]
        groups = PhotoGroups.from_counts([len(photos)])
        out[p.pk] = product_vectors(np.stack(photos), groups)[0].astype(np.float32)
    return out


def expected_lists() -> dict[int, list[tuple[int, float]]]:
    """Every ready product's list under the rules, from scratch: the candidates are the ready
    products allowed in lists (of the product's own category with
    ``LOOKALIKE_LISTS_WITHIN_CATEGORY``); every ready product, allowed or not, has its own list;
    with ``LOOKALIKE_COLLAPSE_DUPLICATES``, near-duplicates collapsed (``brute_collapsed``)."""
    from django.conf import settings

    from catalog.models import Product

    ready = list(Product.objects.filter(status=Product.Status.READY))
    vectors = product_vectors_of(ready)
    category_of = ({p.pk: p.category for p in ready}
                   if settings.LOOKALIKE_LISTS_WITHIN_CATEGORY else None)
    candidates = set(vectors) - out_of_lists()
    metric = settings.LOOKALIKE_METRIC
    if settings.LOOKALIKE_COLLAPSE_DUPLICATES:
        copies = Copies({p.pk: np.frombuffer(bytes(p.vector), "<f4") for p in ready},
                        {p.pk: p.image_sha256 for p in ready},
                        float(settings.LOOKALIKE_DUPLICATE_THRESHOLD))
        return {pid: brute_collapsed(vectors, candidates, vec, pid, rules_of(pid), metric, LIMIT,
                                     copies, category_of)
                for pid, vec in vectors.items()}
    return {pid: brute(vectors, candidates, vec, pid, rules_of(pid), metric, LIMIT, category_of)
            for pid, vec in vectors.items()}


def mismatches() -> list[str]:
    """Every stored list that differs from ``expected_lists`` (ids, order and distances), and
    lists stored for products that are not ready; empty when all agree."""
    from tests.pipeline.helpers import stored_lists

    want = expected_lists()
    have = {pid: [(nid, dist) for _, nid, dist in rows] for pid, rows in stored_lists().items()}
    out = [f"{pid}: stored {have.get(pid, [])}, want {lst}"
           for pid, lst in want.items() if have.get(pid, []) != lst]
    extra = set(have) - set(want)
    return out + ([f"lists of products not ready: {sorted(extra)}"] if extra else [])
