"""The shop-photo experiment's pictures: dyed Fashion-MNIST garments shot the shop's or the
shopper's way, the photo sets (catalog, held-out queries, re-shots, views) and their sizes,
and the clean undyed sets measured the way bench/experiments/clean_quality.py does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from similarity.evaluation.fashion_mnist import balanced_indices, load_split
from similarity.evaluation.shots import DYE_NAMES, Shot, catalog_shot, dyed_colours, shopper_shot


@dataclass(frozen=True)
class Picture:
    """One photo: Fashion-MNIST garment ``index`` of ``split``, dyed ``colour`` and shot as
    ``shot``; ``shot=None`` is the undyed clean photo (similarity.evaluation.fashion_mnist.to_photo)."""

    split: str
    index: int
    colour: tuple[float, float, float]
    shot: Shot | None
    reshoot_of: Picture | None = None  # a product-style view: this catalog picture re-shot

    def spec(self) -> list:
        spec = [self.split, self.index, [round(c, 3) for c in self.colour],
                None if self.shot is None else asdict(self.shot)]
        return spec if self.reshoot_of is None else [*spec, "reshoot", self.reshoot_of.spec()]


@dataclass
class PhotoSet:
    name: str
    pictures: list[Picture]
    labels: np.ndarray  # category
    dyes: np.ndarray  # index into DYE_NAMES
    source: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))  # catalog index

    def __len__(self) -> int:
        return len(self.pictures)


@dataclass(frozen=True)
class Sizes:
    catalog: int  # per class
    queries: int  # per class
    reshots: int
    views: int
    clean_catalog: int
    clean_queries: int


FULL = Sizes(150, 50, 300, 2, 200, 100)
QUICK = Sizes(40, 20, 100, 1, 40, 20)


def _balanced_dyes(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every class gets the dyes in equal shares (then shuffled inside the class)."""
    dyes = np.empty(labels.size, dtype=np.int64)
    for cls in np.unique(labels):
        where = np.flatnonzero(labels == cls)
        dyes[where] = rng.permutation(np.resize(np.arange(len(DYE_NAMES)), where.size))
    return dyes


def _dyed_set(name: str, split: str, idx: np.ndarray, labels: np.ndarray, seed: int,
              shoot: Callable[[np.random.Generator], Shot]) -> PhotoSet:
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    dyes = _balanced_dyes(labels, rng)
    pictures = [Picture(split, int(i), dyed_colours(rng, DYE_NAMES[d]), shoot(rng))
                for i, d in zip(idx.tolist(), dyes.tolist(), strict=True)]
    return PhotoSet(name, pictures, labels.astype(np.int64), dyes)


def _reshoot(name: str, base: PhotoSet, which: np.ndarray, seed: int) -> PhotoSet:
    """Catalog garments ``which`` (same garment, same dye) shot again the shopper's way."""
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    pictures = [Picture(base.pictures[i].split, base.pictures[i].index, base.pictures[i].colour,
                        shopper_shot(rng)) for i in which.tolist()]
    return PhotoSet(name, pictures, base.labels[which], base.dyes[which], which.astype(np.int64))


def product_views(data: ShopData, seed: int) -> ShopData:
    """``data`` with its views made the way the catalog makes them at the rebuild
    (catalog/services/views.py): each catalog picture itself re-shot the shopper's way
    (similarity.evaluation.shots.reshoot), instead of the garment rendered again from its 28 px."""
    views = []
    for v, old in enumerate(data.views):
        rng = np.random.default_rng([seed, v, sum(map(ord, "product-views"))])
        pictures = [Picture(p.split, p.index, p.colour, shopper_shot(rng), reshoot_of=p)
                    for p in data.catalog.pictures]
        views.append(PhotoSet(f"product-{old.name}", pictures, old.labels, old.dyes, old.source))
    return replace(data, views=views)


@dataclass
class ShopData:
    catalog: PhotoSet
    queries: PhotoSet
    reshots: PhotoSet
    views: list[PhotoSet]  # views[v][i] is a shopper-style view of catalog garment i


def make_shop_data(sizes: Sizes, seed: int = 0) -> ShopData:
    _, train_y = load_split("train")
    _, test_y = load_split("test")
    ci = balanced_indices(train_y, sizes.catalog)
    qi = balanced_indices(test_y, sizes.queries)
    catalog = _dyed_set("catalog", "train", ci, train_y[ci], seed, lambda rng: catalog_shot())
    queries = _dyed_set("queries", "test", qi, test_y[qi], seed, shopper_shot)
    pick = np.random.default_rng([seed, 7]).choice(len(catalog), size=min(sizes.reshots, len(catalog)),
                                                    replace=False)
    reshots = _reshoot("reshots", catalog, np.sort(pick), seed)
    every = np.arange(len(catalog))
    views = [_reshoot(f"view{v}", catalog, every, seed) for v in range(sizes.views)]
    return ShopData(catalog, queries, reshots, views)


def make_clean_data(sizes: Sizes, seed: int = 0) -> ShopData:
    """clean_quality's clean sets (undyed, centred), with shopper-style views for fitting."""
    _, train_y = load_split("train")
    _, test_y = load_split("test")
    ci = balanced_indices(train_y, sizes.clean_catalog)
    qi = balanced_indices(test_y, sizes.clean_queries)
    black = (0.0, 0.0, 0.0)

    def clean(name: str, split: str, idx: np.ndarray, labels: np.ndarray) -> PhotoSet:
        return PhotoSet(name, [Picture(split, int(i), black, None) for i in idx.tolist()],
                        labels.astype(np.int64), np.zeros(idx.size, dtype=np.int64))

    catalog = clean("clean-catalog", "train", ci, train_y[ci])
    queries = clean("clean-queries", "test", qi, test_y[qi])
    every = np.arange(len(catalog))
    base = PhotoSet("clean-black", [Picture("train", p.index, black, None) for p in catalog.pictures],
                    catalog.labels, catalog.dyes)
    views = [_reshoot(f"clean-view{v}", base, every, seed) for v in range(sizes.views)]
    empty = PhotoSet("none", [], np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
    return ShopData(catalog, queries, empty, views)

