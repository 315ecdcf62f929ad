"""Retrieval quality on shop-style photos: dyed garments, catalog shots and shoppers' shots.

    python bench/shop_photos.py [--quick] [--sheet docs/shop_sheet.png] [--json rows.json]

No database. Garments are Fashion-MNIST's, dyed in 8 colours (similarity/evaluation/shots.py):

- **catalog**: 150 garments per class from the train split (1,500), each in one dye (the
  dyes spread evenly over every class), shot the shop's way (centred, plain white);
- **queries**: 50 garments per class from the test split (500), held out, shot the shopper's
  way (garment 50-105 % of the frame, off-centre, tilted up to 12 degrees, off-white or grey
  background with a gradient and sensor noise, JPEG quality 60-85);
- **re-shots**: 300 catalog garments shot again the shopper's way (same garment, same dye):
  each should find its own catalog shot first;
- **views**: ``--views`` (2) shopper-style views of every catalog garment, used only to fit
  the robust projection and, in catalog cross-validation, as held-out queries.

``--quick``: 40 / 20 per class, 100 re-shots, 1 view. Everything is seeded (``--seed``).

Metrics (k = 10) on the held-out queries: category P@10 and mAP@10; colour@10 (share of the
10 in the query's dye); category-and-colour@10 (share of the 10 of the query's category *and*
dye); on the re-shots, recall@1 and @10 of the original. Per category and overall.

**Nothing is chosen on the queries.** Every hyper-parameter is chosen by stratified 4-fold
cross-validation inside the catalog: each fold's garments, as one shopper-style view each,
query the other three folds' catalog shots, with any projection fitted without the fold (and
without its views). LDA dimensions and shrinkage and the blend weight maximise category
P@10 there (the weight: the smallest within 0.005 of the best); the colour weight maximises
category-and-colour@10 there. The catalog's own colour labels (the dyes) are used for that,
never the queries'.

Finally the chosen configuration is measured on clean Fashion-MNIST as bench/quality.py does
it (train split 200 per class, test split 100 per class, undyed, dark on white), with its
projection fitted on that catalog plus shopper-style views of it.

Vectors are cached under ``$LOOKALIKE_DATA_DIR/cache-shop`` keyed by the pictures' parameters,
the policy and the model, so a rerun only embeds what changed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from similarity.embedding.colour import COLOUR_KEY, blend_colour, colour_descriptor  # noqa: E402
from similarity.embedding.preprocess import get_policy  # noqa: E402
from similarity.embedding.projection import fit_blend, fit_robust_blend, stratified_folds  # noqa: E402
from similarity.evaluation.fashion_mnist import CLASS_NAMES, balanced_indices, load_split, to_photo  # noqa: E402
from similarity.evaluation.metrics import evaluate, label_precision, rank, refind_recall  # noqa: E402
from similarity.evaluation.shots import (  # noqa: E402
    DYE_NAMES,
    Shot,
    catalog_shot,
    dyed_colours,
    render,
    reshoot,
    shopper_shot,
)

K = 10
CHUNK = 64
FOLDS = 4
CV_TIE = 0.005
LDA_GRID = {"pca_dim": (1024,), "shrinkage": (0.05, 0.15)}
INVARIANT_GRID = ((256, 0.5), (512, 0.5))  # (dimensions, shrinkage) of the garment-invariant half
BLEND_WEIGHTS = (1.0, 2.0)
COLOUR_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
DEPLOYED_BLEND = {"pca_dim": 1024, "shrinkage": 0.05, "weight": 1.0}  # today's lda-blend default
SHEET_CLASSES = (0, 1, 2, 3, 4, 5, 7, 8)
GREEN, ORANGE, RED = (0, 160, 0), (235, 140, 0), (215, 0, 0)


# ---------------------------------------------------------------------------------------------
# Pictures


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
    """bench/quality.py's clean sets (undyed, centred), with shopper-style views for fitting."""
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


def _code_version() -> str:
    """A digest of the code that makes the pictures, the policies' pixels and the colours: cached
    vectors are only reused while it is unchanged."""
    digest = hashlib.sha256()
    for name in ("shop_photos.py", "framing.py", "preprocess.py", "colour.py", "fashion_mnist.py"):
        digest.update((ROOT / "similarity" / name).read_bytes())
    return digest.hexdigest()[:16]


_CODE_VERSION = _code_version()


class Photos:
    """Renders pictures, embeds them under a policy and describes their colour, with a disk cache."""

    def __init__(self, cache_dir: Path, log: Callable[[str], None]) -> None:
        from bench.common import model_dir
        from similarity.embedding.runtime import LiteRTEmbedder

        self._images = {split: load_split(split)[0] for split in ("train", "test")}
        self._model = LiteRTEmbedder(model_dir(), batch_size=CHUNK)
        self._model_key = self._model.identity.key
        self.cache_dir = cache_dir
        self.log = log
        self.embedded = 0
        self.seconds = 0.0

    def picture(self, p: Picture, size: int | None = None) -> Image.Image:
        image28 = self._images[p.split][p.index]
        if p.reshoot_of is not None and p.shot is not None:
            img = reshoot(self.picture(p.reshoot_of), p.shot)
            return img if size is None else img.resize((size, round(size * img.size[1] / img.size[0])))
        if p.shot is None:
            return to_photo(image28, size or 224)
        img = render(image28, p.colour, p.shot)
        return img if size is None else img.resize((size, round(size * img.size[1] / img.size[0])))

    def _cached(self, kind: str, key: str, photos: PhotoSet, compute: Callable[[Image.Image], np.ndarray],
                dim: int, batch: Callable[[list[np.ndarray]], np.ndarray] | None = None) -> np.ndarray:
        spec = [key, _CODE_VERSION, [p.spec() for p in photos.pictures]]
        digest = hashlib.sha256(json.dumps(spec).encode()).hexdigest()
        path = self.cache_dir / f"{kind}-{digest[:24]}.npy"
        if path.is_file():
            return np.load(path, allow_pickle=False)
        start = time.perf_counter()
        out = np.empty((len(photos), dim), dtype=np.float32)
        for i in range(0, len(photos), CHUNK):
            items = [compute(self.picture(p)) for p in photos.pictures[i : i + CHUNK]]
            out[i : i + len(items)] = batch(items) if batch is not None else np.stack(items)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, out)
        tmp.replace(path)
        self.seconds += time.perf_counter() - start
        self.log(f"    {kind} of {photos.name} ({len(photos)}) under {key}: "
                 f"{time.perf_counter() - start:.0f} s")
        return out

    def vectors(self, photos: PhotoSet, policy_key: str) -> np.ndarray:
        policy = get_policy(policy_key)
        self.embedded += len(photos)
        return self._cached("vec", f"{self._model_key}/{policy.key}", photos, policy.to_array, 1280,
                            lambda arrays: self._model.embed(np.stack(arrays)))

    def colours(self, photos: PhotoSet) -> np.ndarray:
        from similarity.embedding.colour import COLOUR_DIM

        return self._cached("colour", COLOUR_KEY, photos, colour_descriptor, COLOUR_DIM)


# ---------------------------------------------------------------------------------------------
# Spaces and configurations

Transform = Callable[[np.ndarray], np.ndarray]


def _raw_fit(x: np.ndarray, y: np.ndarray, aug: np.ndarray, aug_y: np.ndarray, aug_of: np.ndarray
             ) -> Transform:
    return lambda v: np.asarray(v, dtype=np.float64)


Fitter = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], Transform]


def _blend_fitter(robust: bool, pca_dim: int, shrinkage: float, weight: float,
                  invariant_dim: int | None = None, invariant_shrinkage: float = 0.5) -> Fitter:
    """``fit(x, y, views, views_y, views_of)``: views_of[i] is the row of x that view i shows."""
    def fit(x: np.ndarray, y: np.ndarray, aug: np.ndarray, aug_y: np.ndarray, aug_of: np.ndarray
            ) -> Transform:
        dim = min(pca_dim, (x.shape[0] + (aug.shape[0] if robust else 0)) - len(np.unique(y)) - 1)
        if robust:
            return fit_robust_blend(x, y, aug, aug_y, weight=weight, pca_dim=dim, shrinkage=shrinkage,
                                    augmented_of=aug_of,
                                    invariant_dim=None if invariant_dim is None
                                    else min(invariant_dim, x.shape[0] + aug.shape[0] - 1),
                                    invariant_shrinkage=invariant_shrinkage)
        return fit_blend(x, y, weight=weight, pca_dim=dim, shrinkage=shrinkage)

    return fit


@dataclass
class Config:
    name: str
    policy: str
    space: str  # "raw", "lda-blend" or "robust lda-blend"
    params: dict = field(default_factory=dict)
    colour: bool = False  # is the colour weight chosen (else 0)
    cv: dict = field(default_factory=dict)

    @property
    def fitter(self) -> Fitter:
        if self.space == "raw":
            return _raw_fit
        p = self.params
        return _blend_fitter(self.space.startswith("robust"), p["pca_dim"], p["shrinkage"], p["weight"],
                             p.get("invariant_dim"), p.get("invariant_shrinkage", 0.5))


def sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def _space(z: np.ndarray, colours: np.ndarray, weight: float) -> np.ndarray:
    return np.asarray(z, dtype=np.float64) if weight == 0 else blend_colour(z, colours, weight)


@dataclass
class Inputs:
    """One policy's vectors (and the policy-independent colour descriptors) of a data set."""

    catalog: np.ndarray
    queries: np.ndarray
    reshots: np.ndarray
    views: np.ndarray  # (V, N, 1280)
    catalog_colour: np.ndarray
    queries_colour: np.ndarray
    reshots_colour: np.ndarray
    views_colour: np.ndarray  # (1, N, D): view 0's only (the catalog-CV queries), or (0, N, D)


def load_inputs(photos: Photos, data: ShopData, policy: str, *, views: int,
                cv_colours: bool = True) -> Inputs:
    """``views``: how many of the views to embed (view 0 is the catalog-CV queries); colour
    descriptors of view 0 only, and only with ``cv_colours`` (nothing else reads them)."""
    def vec(s: PhotoSet) -> np.ndarray:
        return photos.vectors(s, policy) if len(s) else np.empty((0, 1280), np.float32)

    def col(s: PhotoSet) -> np.ndarray:
        return photos.colours(s) if len(s) else np.empty((0, 196), np.float32)

    used = data.views[:views]
    return Inputs(vec(data.catalog), vec(data.queries), vec(data.reshots),
                  np.stack([vec(v) for v in used]) if used else np.empty((0, len(data.catalog), 1280)),
                  col(data.catalog), col(data.queries), col(data.reshots),
                  np.stack([col(data.views[0])]) if data.views and cv_colours
                  else np.empty((0, len(data.catalog), 196)))


@dataclass(frozen=True)
class Fold:
    train: np.ndarray
    held: np.ndarray
    gallery: np.ndarray  # projected catalog shots of train
    held_shots: np.ndarray  # projected catalog shots of held
    queries: np.ndarray  # projected view 0 of held


def _cv_folds(config: Config, data: ShopData, inp: Inputs) -> list[Fold]:
    """Held-out catalog garments query as their shopper-style view 0; any projection is fitted on
    the other folds' catalog shots and views only."""
    y = data.catalog.labels
    out = []
    for held in stratified_folds(y, FOLDS, seed=0):
        train = np.setdiff1d(np.arange(y.size), held)
        aug = inp.views[:, train].reshape(-1, inp.catalog.shape[1])
        n_views = inp.views.shape[0]
        transform = config.fitter(inp.catalog[train], y[train], aug, np.tile(y[train], n_views),
                                  np.tile(np.arange(train.size), n_views))
        out.append(Fold(train, held, transform(inp.catalog[train]), transform(inp.catalog[held]),
                        transform(inp.views[0][held])))
    return out


def cv_metrics(folds: list[Fold], data: ShopData, inp: Inputs, weight: float) -> dict[str, float]:
    """Catalog CV: category P@10 and category-and-colour@10 of the held-out views against the
    other folds' shots; re-find@1 of the held-out views against all the catalog's shots (their
    own shot included, though neither it nor the view was fitted on)."""
    y, dyes = data.catalog.labels, data.catalog.dyes
    cat, both, refind = [], [], []
    for f in folds:
        g = _space(f.gallery, inp.catalog_colour[f.train], weight)
        own = _space(f.held_shots, inp.catalog_colour[f.held], weight)
        q = _space(f.queries, inp.views_colour[0][f.held], weight)
        d = sq_distances(q, g)
        top = f.train[rank(d, K)]
        cat.append(label_precision(y[f.held], y[top], K))
        both.append(label_precision(y[f.held] * 100 + dyes[f.held], y[top] * 100 + dyes[top], K))
        own_d = ((q - own) ** 2).sum(1)
        refind.append(own_d < d.min(1))
    return {"category": float(np.concatenate(cat).mean()),
            "category_colour": float(np.concatenate(both).mean()),
            "refind": float(np.concatenate(refind).mean())}


def _shape_score(m: dict[str, float]) -> float:
    """What the blend weight and the invariant half are chosen for: category and re-find."""
    return (m["category"] + m["refind"]) / 2


def choose(config: Config, data: ShopData, inp: Inputs, log: Callable[[str], None]) -> Config:
    """Fill in ``config.params`` (unless fixed) and the colour weight by catalog CV."""
    if config.space != "raw" and "pca_dim" not in config.params:
        def cv(params: dict) -> dict[str, float]:
            config.params = params
            return cv_metrics(_cv_folds(config, data, inp), data, inp, 0.0)

        grid = [{"pca_dim": d, "shrinkage": sh, "weight": 1.0}
                for d in LDA_GRID["pca_dim"] for sh in LDA_GRID["shrinkage"]]
        tried = [(cv(p), p) for p in grid]
        best_m, best = max(tried, key=lambda t: t[0]["category"])
        if config.space.startswith("robust"):
            inv = [(best_m, best)] + [(cv(p), p) for p in
                                      ({**best, "invariant_dim": d, "invariant_shrinkage": sh}
                                       for d, sh in INVARIANT_GRID)]
            best_m, best = max(inv, key=lambda t: _shape_score(t[0]))
            tried += inv[1:]
        weights = [(best_m, best)] + [(cv({**best, "weight": w}), {**best, "weight": w})
                                      for w in BLEND_WEIGHTS if w != 1.0]
        top = max(_shape_score(m) for m, _ in weights)
        config.params = next(p for m, p in weights if _shape_score(m) >= top - CV_TIE)
        log(f"    {config.name}: " + "; ".join(
            f"{_params(p)}: category {m['category']:.3f}, re-find {m['refind']:.3f}"
            for m, p in tried + weights[1:]))
    folds = _cv_folds(config, data, inp)
    if "colour_weight" in config.params:  # fixed (the product's setting)
        config.cv = cv_metrics(folds, data, inp, float(config.params["colour_weight"]))
    elif config.colour:
        scores = [(cv_metrics(folds, data, inp, w), w) for w in COLOUR_WEIGHTS]
        chosen = max(scores, key=lambda t: t[0]["category_colour"])  # ties: the smaller weight
        config.params = {**config.params, "colour_weight": chosen[1]}
        config.cv = chosen[0]
        log(f"    {config.name}: colour weights " + ", ".join(
            f"{w:g} {m['category_colour']:.3f}/{m['category']:.3f}" for m, w in scores))
    else:
        config.params = {**config.params, "colour_weight": 0.0}
        config.cv = cv_metrics(folds, data, inp, 0.0)
    return config


def measure(config: Config, data: ShopData, inp: Inputs) -> tuple[dict, np.ndarray]:
    """Fit on the whole catalog (+ views), score queries and re-shots. Returns (row, ranked queries)."""
    y, dyes = data.catalog.labels, data.catalog.dyes
    aug = inp.views.reshape(-1, inp.catalog.shape[1])
    n_views = inp.views.shape[0]
    transform = config.fitter(inp.catalog, y, aug, np.tile(y, n_views),
                              np.tile(np.arange(y.size), n_views))
    w = float(config.params.get("colour_weight", 0.0))
    g = _space(transform(inp.catalog), inp.catalog_colour, w)
    q = _space(transform(inp.queries), inp.queries_colour, w)
    ranked = rank(sq_distances(q, g), K)
    yq, dq = data.queries.labels, data.queries.dyes
    report = evaluate(yq, y[ranked], catalog_labels=y, k=K)
    colour = label_precision(dq, dyes[ranked], K)
    both = label_precision(yq * 100 + dq, y[ranked] * 100 + dyes[ranked], K)
    row: dict = {"configuration": config.name, "preprocessing": config.policy, "space": config.space,
                 "params": config.params, "catalog_cv": config.cv,
                 "precision_at_10": report.precision, "map_at_10": report.map,
                 "colour_at_10": float(colour.mean()),
                 "category_colour_at_10": float(both.mean()), "n_queries": report.n}
    per: dict[str, dict] = {}
    for cls in np.unique(yq).tolist():
        s = report.per_category[cls]
        sel = yq == cls
        per[CLASS_NAMES[int(cls)]] = {"precision_at_10": s.precision, "map_at_10": s.map,
                                      "colour_at_10": float(colour[sel].mean()),
                                      "category_colour_at_10": float(both[sel].mean())}
    if len(data.reshots):
        r = rank(sq_distances(_space(transform(inp.reshots), inp.reshots_colour, w), g), K)
        src = data.reshots.source
        row |= {"recall_at_1": refind_recall(r, src, 1), "recall_at_10": refind_recall(r, src, 10),
                "n_reshots": len(src)}
        for cls in np.unique(data.reshots.labels):
            sel = data.reshots.labels == cls
            per[CLASS_NAMES[int(cls)]]["recall_at_1"] = refind_recall(r[sel], src[sel], 1)
    row["per_category"] = per
    return row, ranked


# ---------------------------------------------------------------------------------------------
# The run


# The catalog's configuration (config/settings/base.py, catalog/space.py): fixed, not chosen here.
PRODUCT = Config("product: the catalog's code path (views re-shot from the catalog photos)", "frame-margin@1",
                 "robust lda-blend", {"pca_dim": 1024, "shrinkage": 0.05, "weight": 1.0, "invariant_dim": 512,
                                      "invariant_shrinkage": 0.5, "colour_weight": 1.0})


def product_configurations() -> list[Config]:
    """``--product``: the catalog's own configuration (its parameters, its colour weight, its
    views), alone (the engine's rows are the full run's)."""
    return [Config(PRODUCT.name, PRODUCT.policy, PRODUCT.space, dict(PRODUCT.params))]


def configurations() -> list[Config]:
    deployed = dict(DEPLOYED_BLEND)
    return [
        Config("reference", "torchvision@1", "raw"),
        Config("default", "pad-margin@1", "lda-blend", dict(deployed)),
        Config("+ framing", "frame-margin@1", "lda-blend"),
        Config("+ colour", "pad-margin@1", "lda-blend", dict(deployed), colour=True),
        Config("+ robust projection", "pad-margin@1", "robust lda-blend"),
        Config("framing + robust projection", "frame-margin@1", "robust lda-blend"),
        Config("combined: framing + robust projection + colour", "frame-margin@1", "robust lda-blend",
               colour=True),
    ]


def run(sizes: Sizes, *, seed: int = 0, sheet: Path | None = None, clean: bool = True,
        log: Callable[[str], None] | None = None, product: bool = False) -> dict:
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.perf_counter()
    from bench.common import data_dir

    cache = Path(os.environ.get("LOOKALIKE_SHOP_CACHE", data_dir() / "cache-shop"))
    photos = Photos(cache, log)
    data = make_shop_data(sizes, seed)
    log(f"catalog {len(data.catalog)}, queries {len(data.queries)}, re-shots {len(data.reshots)}, "
        f"views {len(data.views)} x {len(data.catalog)}; cache {cache}")
    inputs: dict[str, Inputs] = {}
    rows, ranked_by = [], {}
    configs = product_configurations() if product else configurations()
    for config in configs:
        n_views = len(data.views) if config.space.startswith("robust") else 1
        is_product = config.name == PRODUCT.name
        key = f"{config.policy}/{n_views}/{is_product}"
        used = product_views(data, seed) if is_product else data
        if key not in inputs:
            inputs[key] = load_inputs(photos, used, config.policy, views=n_views)
        inp = inputs[key]
        choose(config, used, inp, log)
        row, ranked = measure(config, used, inp)
        rows.append(row)
        ranked_by[config.name] = ranked
        log(f"  {config.name}: P@10 {row['precision_at_10']:.3f}, colour@10 {row['colour_at_10']:.3f}, "
            f"cat+colour@10 {row['category_colour_at_10']:.3f}, re-find@1 {row['recall_at_1']:.3f} "
            f"(catalog CV {row['catalog_cv']}) [{time.perf_counter() - started:.0f} s]")
    chosen = rows[-1]
    result: dict = {"rows": rows, "sizes": asdict(sizes), "seed": seed}
    if clean:
        measured = [-1] if product else [1, -1]  # the default and the combined configuration
        result["clean"] = clean_rows(photos, sizes, seed, [configs[i] for i in measured],
                                     [rows[i]["params"] for i in measured], log)
    if sheet is not None:
        draw(sheet, photos, data, ranked_by[chosen["configuration"]], chosen["configuration"])
        log(f"  sheet written to {sheet}")
    log(f"embedded {photos.embedded} pictures ({photos.seconds:.0f} s not cached); "
        f"total {time.perf_counter() - started:.0f} s")
    return result


def clean_rows(photos: Photos, sizes: Sizes, seed: int, configs: Sequence[Config], params: Sequence[dict],
               log: Callable[[str], None]) -> list[dict]:
    """Clean Fashion-MNIST held-out P@10 of configurations, with the parameters chosen above."""
    clean = make_clean_data(sizes, seed)
    out = []
    for config, p in zip(configs, params, strict=True):
        config.params = dict(p)
        data = product_views(clean, seed) if config.name == PRODUCT.name else clean
        inp = load_inputs(photos, data, config.policy,
                          views=len(data.views) if config.space.startswith("robust") else 0,
                          cv_colours=False)
        row, _ = measure(config, data, inp)
        out.append({"configuration": config.name, "preprocessing": config.policy, "space": config.space,
                    "params": config.params, "precision_at_10": row["precision_at_10"],
                    "map_at_10": row["map_at_10"], "n_queries": row["n_queries"]})
        log(f"  clean Fashion-MNIST, {config.name}: P@10 {row['precision_at_10']:.3f}")
    return out


def draw(path: Path, photos: Photos, data: ShopData, ranked: np.ndarray, title: str) -> None:
    """8 held-out shopper queries and their 10 neighbours: green = same category and dye,
    orange = same category only, red = another category."""
    from similarity.evaluation.contact_sheet import SheetLayout, SheetRow, SheetTile, draw_sheet

    yq, dq = data.queries.labels, data.queries.dyes
    yc, dc = data.catalog.labels, data.catalog.dyes
    rows = []
    for cls in SHEET_CLASSES:
        qi = int(np.flatnonzero(yq == cls)[0])
        tiles = []
        for r, ci in enumerate(ranked[qi, :K].tolist(), start=1):
            frame = GREEN if (yc[ci], dc[ci]) == (yq[qi], dq[qi]) else ORANGE if yc[ci] == yq[qi] else RED
            tiles.append(SheetTile(photos.picture(data.catalog.pictures[ci], 112),
                                   f"#{r} {CLASS_NAMES[yc[ci]]}\n{DYE_NAMES[dc[ci]]}", frame))
        hits = int(((yc[ranked[qi, :K]] == yq[qi]) & (dc[ranked[qi, :K]] == dq[qi])).sum())
        rows.append(SheetRow(photos.picture(data.queries.pictures[qi], 112), tiles,
                             caption=f"{CLASS_NAMES[yq[qi]]}, {DYE_NAMES[dq[qi]]}\n{hits}/10 both"))
    sheet = draw_sheet(rows, SheetLayout(tile=96, pad=8, gap=24, frame_width=4, font_size=12))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")


def _f(v: object) -> str:
    return "—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _params(p: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in p.items())


def table(result: dict) -> str:
    lines = [
        "| configuration | preprocessing | space (parameters by catalog CV) "
        "| catalog CV P@10 / cat+colour@10 / re-find@1 "
        "| **category P@10** | mAP@10 | **colour@10** | **category and colour@10** | **re-shot recall@1** "
        "| recall@10 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        cv = r["catalog_cv"]
        lines.append(
            f"| {r['configuration']} | {r['preprocessing']} | {r['space']} ({_params(r['params'])}) "
            f"| {cv['category']:.3f} / {cv['category_colour']:.3f} / {cv['refind']:.3f} "
            f"| **{_f(r['precision_at_10'])}** "
            f"| {_f(r['map_at_10'])} | **{_f(r['colour_at_10'])}** | **{_f(r['category_colour_at_10'])}** "
            f"| **{_f(r['recall_at_1'])}** | {_f(r['recall_at_10'])} |")
    chosen = result["rows"][-1]
    lines += ["", f"Per category, {chosen['configuration']}:", "",
              "| category | P@10 | mAP@10 | colour@10 | category and colour@10 | re-shot recall@1 |",
              "|---|---|---|---|---|---|"]
    for name, s in chosen["per_category"].items():
        lines.append(f"| {name} | {_f(s['precision_at_10'])} | {_f(s['map_at_10'])} "
                     f"| {_f(s['colour_at_10'])} "
                     f"| {_f(s['category_colour_at_10'])} | {_f(s.get('recall_at_1'))} |")
    if "clean" in result:
        lines += ["", "Clean Fashion-MNIST, held out (undyed, centred; parameters as chosen above):", "",
                  "| configuration | preprocessing | space | P@10 | mAP@10 |", "|---|---|---|---|---|"]
        for r in result["clean"]:
            lines.append(f"| {r['configuration']} | {r['preprocessing']} "
                         f"| {r['space']} ({_params(r['params'])}) "
                         f"| **{_f(r['precision_at_10'])}** | {_f(r['map_at_10'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40/20 garments per class, 100 re-shots, 1 view")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-clean", action="store_true", help="skip the clean Fashion-MNIST measurement")
    parser.add_argument("--sheet", type=Path, default=None,
                        help="draw 8 queries and their neighbours (colour)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--product", action="store_true",
                        help="only the catalog's own code path (its fixed parameters and colour "
                             "weight, views re-shot from the catalog photos)")
    args = parser.parse_args(argv)
    result = run(QUICK if args.quick else FULL, seed=args.seed, sheet=args.sheet, clean=not args.no_clean,
                 product=args.product)
    print(table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
