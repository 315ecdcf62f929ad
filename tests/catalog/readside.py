"""Fixtures and helpers for the read-side tests (selectors, views, tag, admin).

Products are made directly with the ORM (no Celery); vectors are real embeddings of
Fashion-MNIST garments made once per session with the real LiteRT embedder.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from django.core.cache import cache
from django.utils import timezone
from django.utils.text import slugify
from PIL import Image

from catalog.models import Product, ProductNeighbour, ProductPhoto
from catalog.vectors import vector_key_current

_counter = itertools.count(1)


def png_bytes(colour: tuple[int, int, int] = (200, 30, 60), size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def image_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def make_product(
    name: str | None = None,
    *,
    category: str = "Tops",
    status: str = Product.Status.READY,
    vector: np.ndarray | None = None,
    image: bytes | None = None,
    media_root: Path | None = None,
    error_message: str = "",
) -> Product:
    """A product row with an image file under MEDIA_ROOT (written directly, no services)."""
    from django.conf import settings

    n = next(_counter)
    name = name or f"{category} {n}"
    slug = f"{slugify(name)}-{n}"
    rel = f"products/{slug}.png"
    root = Path(media_root or settings.MEDIA_ROOT)
    (root / "products").mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(image if image is not None else png_bytes())
    return Product.objects.create(
        name=name,
        slug=slug,
        category=category,
        image=rel,
        status=status,
        error_message=error_message,
        vector=None if vector is None else np.asarray(vector, dtype="<f4").tobytes(),
        vector_key=vector_key_current() if vector is not None else "",
        status_changed_at=timezone.now(),
    )


def make_photo(product: Product, *, status: str = ProductPhoto.Status.READY,
               colour: tuple[int, int, int] = (30, 60, 200)) -> ProductPhoto:
    """A further photo of ``product`` with its file under MEDIA_ROOT (no services)."""
    from django.conf import settings

    rel = f"products/{product.slug}-more-{next(_counter)}.png"
    (Path(settings.MEDIA_ROOT) / rel).write_bytes(png_bytes(colour))
    return ProductPhoto.objects.create(product=product, image=rel, status=status,
                                       status_changed_at=timezone.now())


def link_neighbours(product: Product, neighbours: list[Product]) -> list[ProductNeighbour]:
    """Neighbour rows rank 1..n, distances increasing, created in reverse rank order."""
    rows = [
        ProductNeighbour(product=product, neighbour=nb, rank=rank, distance=0.5 + rank / 10)
        for rank, nb in enumerate(neighbours, start=1)
    ]
    return ProductNeighbour.objects.bulk_create(list(reversed(rows)))


@dataclass(frozen=True)
class Garments:
    photos: list[Image.Image]
    labels: np.ndarray
    vectors: np.ndarray  # (N, 1280) float32, real embeddings under the configured policy


@pytest.fixture(scope="session")
def garments(model_path: Path, data_dir: Path) -> Garments:
    """40 catalog garments (4 per class, train split) and their real embeddings."""
    from django.conf import settings

    from similarity.embedding.embedder import ImageEmbedder
    from similarity.evaluation.fashion_mnist import balanced_indices, load_split, to_photo

    images, labels = load_split("train")
    picks = balanced_indices(labels, 4)
    photos = [to_photo(images[i]) for i in picks]
    embedder = ImageEmbedder(
        model_dir=data_dir / "models", policy=settings.LOOKALIKE_PREPROCESS_POLICY
    )
    vectors = embedder.embed_many([image_bytes(p) for p in photos])
    return Garments(photos=photos, labels=labels[picks], vectors=vectors)


@pytest.fixture(scope="session")
def query_photos() -> list[Image.Image]:
    """One garment of each class from the test split (never in the catalog), by class index."""
    from similarity.evaluation.fashion_mnist import CLASS_NAMES, load_split, to_photo

    images, labels = load_split("test")
    return [to_photo(images[np.flatnonzero(labels == c)[0]]) for c in range(len(CLASS_NAMES))]


@pytest.fixture
def media_root(settings, tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture
def fresh_caches() -> None:
    """Empty the rate-limit cache and the in-process search index around each test."""
    from catalog.selectors.photo_search import search_index_clear

    cache.clear()
    search_index_clear()
    yield
    cache.clear()
    search_index_clear()


@pytest.fixture
def catalog_of_garments(media_root: Path, garments: Garments) -> list[Product]:
    """The 40 garments as READY products with their real vectors and images."""
    from similarity.evaluation.fashion_mnist import CLASS_NAMES

    return [
        make_product(
            f"{CLASS_NAMES[int(label)]} {i}",
            category=CLASS_NAMES[int(label)],
            vector=vector,
            image=image_bytes(photo),
        )
        for i, (photo, label, vector) in enumerate(
            zip(garments.photos, garments.labels, garments.vectors, strict=True)
        )
    ]


def brute_force(query: np.ndarray, products: list[Product], k: int = 10) -> list[tuple[int, float]]:
    """Reference answer: float64 euclidean to every product, ordered by (float32 distance, id)."""
    rows = []
    for p in products:
        d = np.float32(np.linalg.norm(p.vector_array().astype(np.float64) - query.astype(np.float64)))
        rows.append((float(d), p.pk))
    rows.sort()
    return [(pid, d) for d, pid in rows[:k]]


@pytest.fixture
def stored_vote(settings, tmp_path: Path):
    """``stored_vote(size, min_share)`` stores a category vote as the full rebuild does (chosen
    in the current space); removed after the test."""
    from catalog.search_vote import category_vote_remove, category_vote_save
    from catalog.space import space_current
    from similarity import CategoryVote, VoteChoice

    settings.LOOKALIKE_MATRIX_DIR = tmp_path / "matrix"

    def store(size: int, min_share: float) -> None:
        scores = {(size, min_share): (0.6, 1.0, 0.6)}
        category_vote_save(VoteChoice(CategoryVote(size, min_share), 0.5, scores, 10, 0.0), space_current())

    yield store
    category_vote_remove()


@pytest.fixture(autouse=True)
def read_side_defaults(request, settings) -> None:
    """Every read-side test: temp media, empty caches, and a rate limit tests never hit."""
    request.getfixturevalue("media_root")
    request.getfixturevalue("fresh_caches")
    settings.LOOKALIKE_SEARCH_RATE = "1000/m"




# What the admin's change form posts besides the product's fields: the listed checkbox (ticked)
# and the empty inlines of its further photos and of its pins and exclusions.
ADMIN_CHANGE_EXTRA = {"listed": "on", "photos-TOTAL_FORMS": "0", "photos-INITIAL_FORMS": "0",
                      "list_rules-TOTAL_FORMS": "0", "list_rules-INITIAL_FORMS": "0"}
