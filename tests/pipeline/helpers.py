"""Images, brute-force neighbours and polling, shared by the services and pipeline tests."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Count
from PIL import Image, ImageDraw

from catalog.models import Product, ProductNeighbour

K = 10


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def fashion_images(per_class: int, *, offset: int = 0, size: int = 224) -> list[tuple[str, bytes]]:
    """(class name, PNG bytes) of ``per_class`` Fashion-MNIST garments per class, dark on white."""
    from similarity.evaluation import fashion_mnist

    images, labels = fashion_mnist.load_split("train")
    picks = fashion_mnist.balanced_indices(labels, per_class, offset=offset)
    return [
        (fashion_mnist.CLASS_NAMES[labels[i]], png_bytes(fashion_mnist.to_photo(images[i], size)))
        for i in picks
    ]


def dyed_garments(classes: tuple[str, ...], dyes: tuple[str, ...], per: int, *,
                  offset: int = 0) -> list[tuple[str, str, bytes]]:
    """(class name, dye name, PNG bytes): ``per`` Fashion-MNIST garments of every class in
    every dye (similarity/evaluation/shots.py), shot the shop's way (centred, on white)."""
    from similarity.evaluation import fashion_mnist
    from similarity.evaluation.shots import DYES, catalog_shot, render

    images, labels = fashion_mnist.load_split("train")
    out = []
    for cls in classes:
        where = np.flatnonzero(labels == fashion_mnist.CLASS_NAMES.index(cls))
        for d, dye in enumerate(dyes):
            for i in where[offset + d * per : offset + (d + 1) * per].tolist():
                out.append((cls, dye, png_bytes(render(images[i], DYES[dye], catalog_shot()))))
    return out


def drawn_image(seed: int, size: int = 224) -> bytes:
    """A distinct synthetic 'garment': coloured shapes and stripes on white."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = rng.integers(0, size // 2, 2)
        w, h = rng.integers(size // 4, size // 2, 2)
        x1, y1 = x0 + w, y0 + h
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    return png_bytes(img)


def upload(data: bytes, name: str = "garment.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="image/png")


def stored_lists() -> dict[int, list[tuple[int, int, float]]]:
    out: dict[int, list[tuple[int, int, float]]] = {}
    for pid, rank, nid, dist in ProductNeighbour.objects.order_by("product_id", "rank").values_list(
        "product_id", "rank", "neighbour_id", "distance"
    ):
        out.setdefault(pid, []).append((rank, nid, dist))
    return out


def brute_force(products: list[Product]) -> tuple[dict[int, list[tuple[int, float]]], dict]:
    """Top-10 by (euclidean distance, id) from the stored vectors, in float64, with numpy only."""
    ids = [p.pk for p in products]
    vecs = np.stack([np.frombuffer(bytes(p.vector), "<f4").astype(np.float64) for p in products])
    dist = np.sqrt(((vecs[:, None, :] - vecs[None, :, :]) ** 2).sum(axis=2))
    lists = {}
    for i, pid in enumerate(ids):
        order = sorted((dist[i, j], ids[j]) for j in range(len(ids)) if j != i)[:K]
        lists[pid] = [(nid, d) for d, nid in order]
    lookup = {(a, b): dist[i, j] for i, a in enumerate(ids) for j, b in enumerate(ids)}
    return lists, lookup


def neighbour_mismatches(*, rtol: float = 1e-4, atol: float = 1e-4) -> list[str]:
    """Every way the stored lists differ from a brute-force recomputation (empty when equal).

    Distances must agree rank by rank, each stored neighbour must really lie at its stored
    distance, ranks run 1..k with no duplicate or self. So only exact ties may reorder.
    """
    ready = list(Product.objects.filter(status=Product.Status.READY).order_by("pk"))
    others = Product.objects.exclude(status=Product.Status.READY)
    problems: list[str] = []
    if others.filter(neighbour_links__isnull=False).exists():
        problems.append("a product that is not ready has neighbour rows")
    if not ready:
        return problems
    expected, true_dist = brute_force(ready)
    stored = stored_lists()
    ready_ids = {p.pk for p in ready}
    for pid, want in expected.items():
        have = stored.get(pid, [])
        if [r for r, _, _ in have] != list(range(1, len(want) + 1)):
            problems.append(f"{pid}: ranks {[r for r, _, _ in have]}, want 1..{len(want)}")
            continue
        nids = [n for _, n, _ in have]
        if len(set(nids)) != len(nids) or pid in nids or not set(nids) <= ready_ids:
            problems.append(f"{pid}: bad neighbour ids {nids}")
            continue
        for (rank, nid, dist), (_, want_d) in zip(have, want, strict=True):
            real = true_dist[(pid, nid)]
            if not (np.isclose(dist, want_d, rtol=rtol, atol=atol)
                    and np.isclose(dist, real, rtol=rtol, atol=atol)):
                problems.append(f"{pid} rank {rank}: stored {nid}@{dist}, want d={want_d}, "
                                f"true d of {nid} = {real}")
                break
    extra = set(stored) - ready_ids
    if extra:
        problems.append(f"lists stored for products not ready: {sorted(extra)}")
    return problems


def wait_for(predicate: Callable[[], bool | str], *, timeout: float = 120.0,
             interval: float = 0.25, what: str = "condition") -> None:
    """Poll ``predicate`` until truthy; on timeout fail with its last answer."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()
        if last is True:
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}: {last}")


def problems(expected: int | None = None) -> list[str]:
    """Everything that differs from the promised end state (empty when all is well).

    Every product ready; matrix ids == ready ids; the matrix symmetric with a zero diagonal;
    min(10, N-1) neighbours each; every list equal to a brute-force recomputation (numpy, from
    the vectors in the database).
    """
    from catalog.engine import matrix_store

    products = Product.objects.all()
    n = products.count()
    if expected is not None and n != expected:
        return [f"{n} products, expected {expected}"]
    not_ready = list(products.exclude(status=Product.Status.READY).values_list("pk", "status"))
    if not_ready:
        return [f"{len(not_ready)} not ready: {not_ready[:5]}"]
    ready = set(products.values_list("pk", flat=True))
    matrix = matrix_store().store.load()
    ids = set(matrix.ids.tolist())
    if ids != ready:
        return [f"matrix ids != ready ids: missing {sorted(ready - ids)[:5]}, "
                f"extra {sorted(ids - ready)[:5]}"]
    out = []
    if matrix.layout == "dense":  # the top-k layout has no N x N matrix
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
