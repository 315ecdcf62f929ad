"""What "consistent" means, checked from the outside: the database, the files, brute force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from django.db.models import Count

from catalog.models import Product, ProductNeighbour
from tests.pipeline.helpers import K, fashion_images, neighbour_mismatches, upload, wait_for

__all__ = ["K", "fashion_images", "files_problems", "problems", "settled", "upload", "wait_for"]


def files_problems(directory: Path) -> list[str]:
    """Every .npz in ``directory`` must load, member by member, with allow_pickle=False, and the
    store must load from them."""
    from catalog.services.engine import matrix_store

    out = []
    for path in sorted(directory.glob("*.npz")):
        try:
            with np.load(path, allow_pickle=False) as z:
                for key in z.files:
                    z[key]
        except Exception as exc:
            out.append(f"{path.name}: {type(exc).__name__}: {exc}")
    try:
        matrix_store().load()
    except Exception as exc:
        out.append(f"the store does not load: {type(exc).__name__}: {exc}")
    return out


def problems(expected: int | None = None) -> list[str]:
    """Everything that differs from the promised end state (empty when all is well).

    Every product ready; matrix ids == ready ids; the matrix symmetric with a zero diagonal;
    min(10, N-1) neighbours each; every list equal to a brute-force recomputation (numpy, from
    the vectors in the database).
    """
    from catalog.services.engine import matrix_store

    products = Product.objects.all()
    n = products.count()
    if expected is not None and n != expected:
        return [f"{n} products, expected {expected}"]
    not_ready = list(products.exclude(status=Product.Status.READY).values_list("pk", "status"))
    if not_ready:
        return [f"{len(not_ready)} not ready: {not_ready[:5]}"]
    ready = set(products.values_list("pk", flat=True))
    matrix = matrix_store().load()
    ids = set(matrix.ids.tolist())
    if ids != ready:
        return [f"matrix ids != ready ids: missing {sorted(ready - ids)[:5]}, "
                f"extra {sorted(ids - ready)[:5]}"]
    out = []
    d = np.asarray(matrix.distances)
    if not np.array_equal(d, d.T):
        out.append("the matrix is not symmetric")
    if np.any(np.diag(d) != 0):
        out.append("the matrix diagonal is not zero")
    want = min(K, n - 1)
    counts = dict(
        ProductNeighbour.objects.values("product_id").annotate(c=Count("id"))
        .values_list("product_id", "c")
    )
    short = [pid for pid in ready if counts.get(pid, 0) != want]
    if short:
        out.append(f"{len(short)} lists without {want} neighbours: {sorted(short)[:5]}")
    out += neighbour_mismatches()[:5]
    return out


def settled(expected: int | None = None):
    """A ``wait_for`` predicate: True once ``problems(expected)`` is empty."""

    def check() -> bool | str:
        found = problems(expected)
        return True if not found else "; ".join(found)

    return check
