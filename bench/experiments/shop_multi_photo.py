"""Several photos per product: the product distance candidates measured on the shop-photo benchmark.

    python -m bench.experiments.shop_multi_photo [--quick] [--seed N] [--json rows.json]

The data and the space are ``shop_quality --product``'s (bench/experiments/shop_quality.py):
dyed Fashion-MNIST catalog garments shot the shop's way, held-out shopper queries, re-shots of
catalog garments, and the catalog's own configuration (robust lda-blend + colour, fixed
parameters, views re-shot from the catalog photos). Each catalog garment also gets two further
shop photos (similarity.evaluation.shots.shop_extra_shot: another framing, placing, pose and
studio background), and four catalogs are built from the same garments: every product with
1, 2 or 3 photos (the catalog shot first), and a mixed one of 1-3 photos (a third each).

The projection is fitted as with one photo, on the catalog shots and their views only (the
further photos are never fitted on), so every catalog and candidate is compared in the same
space; nothing is chosen on the queries. One more catalog, "3 photos, projection fitted on
them too", fits the projection with every garment's further photos as more of its views (its
paired differences are from the first photo in the default fit).

Candidates (similarity/index/product_distance.py): the first photo only (today's product), min
over photo pairs, the L2-normalised mean vector, the mean of the pairwise distances, and
chamfer (each photo's nearest photo of the other product, averaged both ways).

Scored, with standard errors, and each candidate's paired difference from the first photo
(same queries and products; k = 10):

- **search by photo**: held-out shopper queries against every product (category P@10,
  colour@10) and inside the query's category (colour@10; category P@10 is 1 there); re-shots
  (a new shopper shot of a catalog garment, never one of its product's photos) find their
  product at rank 1, across the catalog and inside its category;
- **product pages**: every catalog product's list of the other products, held out (4
  stratified folds of garments; each fold's products, all their photos, are ranked against the
  whole catalog in the space fitted without the fold's garments and views), across the catalog
  (category P@10, colour@10) and inside its category (colour@10);
- **3-photo share** (mixed catalog): the share of search-by-photo list places held by
  products with 3 photos (a third of the catalog), i.e. whether a candidate favours products
  with more photos.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from bench.common import data_dir, sq_distances
from bench.experiments.shop_catalog_cv import FOLDS, choose_as_catalog
from bench.experiments.shop_cli import shop_main
from bench.experiments.shop_configurations import product_configuration
from bench.experiments.shop_embeddings import Photos
from bench.experiments.shop_pictures import (
    PhotoSet,
    Picture,
    ShopData,
    Sizes,
    make_shop_data,
    product_views,
)
from bench.experiments.shop_spaces import Config, Inputs, K, fit_space, format_params, in_space, load_inputs
from similarity.embedding.projection import stratified_folds
from similarity.evaluation.metrics import label_precision, rank
from similarity.evaluation.shots import shop_extra_shot
from similarity.index.product_distance import (
    PhotoGroups,
    chamfer,
    first_photo,
    mean_pair,
    mean_vectors,
    min_pair,
)

MAX_PHOTOS = 3
CATALOGS = ("1 photo", "2 photos", "3 photos", "1-3 photos (mixed)")
Reduce = Callable[[np.ndarray, PhotoGroups, PhotoGroups], np.ndarray]
PAIR_CANDIDATES: dict[str, Reduce] = {"first photo": first_photo, "min over photo pairs": min_pair,
                                      "mean of pairwise distances": mean_pair, "chamfer": chamfer}
MEAN_VECTOR = "mean vector"
FITTED_ON_PHOTOS = "3 photos, projection fitted on them too"
CANDIDATES = ("first photo", "min over photo pairs", MEAN_VECTOR, "mean of pairwise distances", "chamfer")


def extra_photos(catalog: PhotoSet, seed: int) -> list[PhotoSet]:
    """Photos 2..MAX_PHOTOS of every catalog garment: the same garment and dye, shot again the
    shop's way with another framing, placing, pose and background."""
    out = []
    for n in range(2, MAX_PHOTOS + 1):
        rng = np.random.default_rng([seed, n, sum(map(ord, "extra-photos"))])
        pictures = [Picture(p.split, p.index, p.colour, shop_extra_shot(rng)) for p in catalog.pictures]
        out.append(PhotoSet(f"photo{n}", pictures, catalog.labels, catalog.dyes,
                            np.arange(len(catalog), dtype=np.int64)))
    return out


def photo_counts(catalog: str, n: int, seed: int) -> np.ndarray:
    """How many photos each product holds in the named catalog."""
    if catalog.endswith("(mixed)"):
        rng = np.random.default_rng([seed, sum(map(ord, "photo-counts"))])
        return rng.permutation(np.resize(np.arange(1, MAX_PHOTOS + 1), n)).astype(np.int64)
    return np.full(n, int(catalog.split()[0]), dtype=np.int64)


@dataclass
class Raw:
    """Embeddings and colour descriptors before the projection; photos (N, MAX_PHOTOS, ...),
    the catalog shot first."""

    photos: np.ndarray
    colours: np.ndarray
    queries: np.ndarray
    queries_colour: np.ndarray
    reshots: np.ndarray
    reshots_colour: np.ndarray


@dataclass
class Space:
    """Everything in a compared space: photos (N, MAX_PHOTOS, D)."""

    photos: np.ndarray
    queries: np.ndarray
    reshots: np.ndarray

    @classmethod
    def of(cls, raw: Raw, transform: Callable[[np.ndarray], np.ndarray], weight: float) -> Space:
        n, m, _ = raw.photos.shape
        flat = in_space(transform(raw.photos.reshape(n * m, -1)), raw.colours.reshape(n * m, -1), weight)
        return cls(flat.reshape(n, m, -1), in_space(transform(raw.queries), raw.queries_colour, weight),
                   in_space(transform(raw.reshots), raw.reshots_colour, weight))

    def catalog(self, counts: np.ndarray, products: np.ndarray | None = None
                ) -> tuple[np.ndarray, PhotoGroups]:
        """The photo vectors of ``products`` (all by default) product by product, and whose they are."""
        products = np.arange(counts.size) if products is None else products
        keep = np.arange(MAX_PHOTOS)[None, :] < counts[products, None]
        return self.photos[products][keep], PhotoGroups.from_counts(counts[products])


@dataclass(frozen=True)
class Labels:
    y: np.ndarray  # catalog categories
    dyes: np.ndarray
    yq: np.ndarray  # held-out queries
    dq: np.ndarray
    yr: np.ndarray  # re-shots
    src: np.ndarray  # re-shot -> catalog product


@dataclass
class Bench:
    """The space fitted on the whole catalog (search by photo) and per fold without the fold's
    garments (product pages, held out)."""

    space: Space
    folds: list[tuple[np.ndarray, Space]]
    labels: Labels


def product_distances(candidate: str, q: np.ndarray, q_groups: PhotoGroups, c: np.ndarray,
                      c_groups: PhotoGroups) -> np.ndarray:
    """(query products x catalog products) under a candidate."""
    if candidate == MEAN_VECTOR:
        return sq_distances(mean_vectors(q, q_groups), mean_vectors(c, c_groups))
    return PAIR_CANDIDATES[candidate](sq_distances(q, c), q_groups, c_groups)


def _ranked(d: np.ndarray, q_labels: np.ndarray, labels: np.ndarray, scope: str, k: int) -> np.ndarray:
    return rank(np.where(q_labels[:, None] == labels[None, :], d, np.inf) if scope == "category" else d, k)


def _list_scores(d: np.ndarray, yq: np.ndarray, dq: np.ndarray, lab: Labels, prefix: str
                 ) -> dict[str, np.ndarray]:
    """Per query: category P@10 across the catalog, colour@10 across it and inside the category."""
    across, inside = _ranked(d, yq, lab.y, "catalog", K), _ranked(d, yq, lab.y, "category", K)
    return {f"{prefix} P@10": label_precision(yq, lab.y[across], K),
            f"{prefix} colour@10": label_precision(dq, lab.dyes[across], K),
            f"{prefix} in category colour@10": label_precision(dq, lab.dyes[inside], K)}


def search_scores(candidate: str, space: Space, counts: np.ndarray, lab: Labels) -> dict[str, np.ndarray]:
    """Per held-out query and per re-shot: search by photo's figures."""
    c, groups = space.catalog(counts)
    dq = product_distances(candidate, space.queries, PhotoGroups.single(lab.yq.size), c, groups)
    dr = product_distances(candidate, space.reshots, PhotoGroups.single(lab.yr.size), c, groups)
    out = _list_scores(dq, lab.yq, lab.dq, lab, "search")
    for scope, name in (("catalog", "search re-shot recall@1"),
                        ("category", "search in category re-shot recall@1")):
        out[name] = (_ranked(dr, lab.yr, lab.y, scope, 1)[:, 0] == lab.src).astype(np.float64)
    out["3-photo share"] = (counts[rank(dq, K)] == MAX_PHOTOS).mean(1)
    return out


def page_scores(candidate: str, folds: list[tuple[np.ndarray, Space]], counts: np.ndarray, lab: Labels
                ) -> dict[str, np.ndarray]:
    """Per catalog product, held out: its list of the other products, in the space fitted
    without its fold."""
    parts = []
    for held, space in folds:
        c, groups = space.catalog(counts)
        q, q_groups = space.catalog(counts, held)
        d = product_distances(candidate, q, q_groups, c, groups)
        d[np.arange(held.size), held] = np.inf
        parts.append(_list_scores(d, lab.y[held], lab.dyes[held], lab, "pages"))
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _bench(config: Config, data: ShopData, inp: Inputs, raw: Raw, log: Callable[[str], None]) -> Bench:
    """Every photo, query and re-shot in the space fitted on the whole catalog, and per fold."""
    w = float(config.params.get("colour_weight", 0.0))
    started = time.perf_counter()
    space = Space.of(raw, fit_space(config, data, inp), w)
    log(f"space {config.space} ({format_params(config.params)}) with {inp.views.shape[0]} views "
        f"fitted in {time.perf_counter() - started:.0f} s")
    y = data.catalog.labels
    folds = [(held, Space.of(raw, fit_space(config, data, inp, np.setdiff1d(np.arange(y.size), held)), w))
             for held in stratified_folds(y, FOLDS, seed=0)]
    log(f"  {FOLDS} fold spaces fitted [{time.perf_counter() - started:.0f} s]")
    return Bench(space, folds, Labels(y, data.catalog.dyes, data.queries.labels, data.queries.dyes,
                                      data.reshots.labels, data.reshots.source))


def build(photos: Photos, sizes: Sizes, seed: int, log: Callable[[str], None]
          ) -> tuple[Bench, Callable[[], Bench], dict]:
    """The catalog's configuration fitted on the catalog shots and their views, and (when
    called) fitted with the further photos as more views of their garment; the figures in both."""
    data = product_views(make_shop_data(sizes, seed), seed)
    config = product_configuration()
    inp = load_inputs(photos, data, config.policy, views=len(data.views))
    if config.auto_colour:
        choose_as_catalog(config, data, inp, log)
    extras = extra_photos(data.catalog, seed)
    raw = Raw(np.stack([inp.catalog, *(photos.vectors(s, config.policy) for s in extras)], axis=1),
              np.stack([inp.catalog_colour, *(photos.colours(s) for s in extras)], axis=1),
              inp.queries, inp.queries_colour, inp.reshots, inp.reshots_colour)
    with_photos = replace(inp, views=np.concatenate([inp.views, raw.photos[:, 1:].transpose(1, 0, 2)]))
    info = {"configuration": config.name, "space": config.space, "params": config.params}
    return _bench(config, data, inp, raw, log), lambda: _bench(config, data, with_photos, raw, log), info


def _stat(values: np.ndarray) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "se": float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else 0.0}


def measure_catalog(bench: Bench, catalog: str, seed: int, base: dict[str, np.ndarray] | None = None,
                    label: str | None = None) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Every candidate on one catalog, with its paired difference from ``base`` (by default the
    first photo's scores in the same space). Returns the rows and the first photo's scores."""
    counts = photo_counts(catalog, bench.space.photos.shape[0], seed)
    rows, first = [], None
    for candidate in CANDIDATES[:1] if catalog == "1 photo" else CANDIDATES:
        started = time.perf_counter()
        scores = {**search_scores(candidate, bench.space, counts, bench.labels),
                  **page_scores(candidate, bench.folds, counts, bench.labels)}
        first = first or scores
        rows.append({"catalog": label or catalog, "candidate": candidate,
                     "figures": {name: _stat(v) for name, v in scores.items()},
                     "vs_first_photo": {name: _stat(v - (base or first)[name]) for name, v in scores.items()},
                     "seconds": time.perf_counter() - started})
    assert first is not None
    return rows, first


def run(sizes: Sizes, *, seed: int = 0, log: Callable[[str], None] | None = None) -> dict:
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.perf_counter()
    photos = Photos(Path(os.environ.get("LOOKALIKE_SHOP_CACHE", data_dir() / "cache-shop")), log)
    bench, fit_on_photos, info = build(photos, sizes, seed, log)
    rows: list[dict] = []
    base = None
    for catalog in CATALOGS:
        measured, first = measure_catalog(bench, catalog, seed)
        base = base or first
        rows += measured
    log(table({"rows": rows}) + f"\n[{time.perf_counter() - started:.0f} s]")
    rows += measure_catalog(fit_on_photos(), "3 photos", seed, base, FITTED_ON_PHOTOS)[0]
    log(f"embedded {photos.embedded} pictures ({photos.seconds:.0f} s not cached); "
        f"total {time.perf_counter() - started:.0f} s")
    return {"rows": rows, "sizes": asdict(sizes), "seed": seed, **info,
            "seconds": time.perf_counter() - started}


COLUMNS = ("search P@10", "search colour@10", "search re-shot recall@1", "search in category colour@10",
           "search in category re-shot recall@1", "pages P@10", "pages colour@10",
           "pages in category colour@10")
DIFF_COLUMNS = ("search P@10", "search colour@10", "search re-shot recall@1", "pages P@10", "pages colour@10")


def _f(stat: dict[str, float], signed: bool = False) -> str:
    return f"{stat['mean']:+.3f} ± {stat['se']:.3f}" if signed else f"{stat['mean']:.3f} ± {stat['se']:.3f}"


def table(result: dict) -> str:
    head = "| catalog | product distance | " + " | ".join(COLUMNS) + " | 3-photo share of search lists |"
    lines = [head, "|---" * (len(COLUMNS) + 3) + "|"]
    for r in result["rows"]:
        f = r["figures"]
        share = f"{f['3-photo share']['mean']:.3f}" if r["catalog"].endswith("(mixed)") else "—"
        lines.append(f"| {r['catalog']} | {r['candidate']} | " + " | ".join(_f(f[c]) for c in COLUMNS)
                     + f" | {share} |")
    lines += ["", "Paired difference from the first photo (same queries and products):", "",
              "| catalog | product distance | " + " | ".join(DIFF_COLUMNS) + " |",
              "|---" * (len(DIFF_COLUMNS) + 2) + "|"]
    for r in result["rows"]:
        if r["candidate"] != "first photo":
            lines.append(f"| {r['catalog']} | {r['candidate']} | "
                         + " | ".join(_f(r["vs_first_photo"][c], signed=True) for c in DIFF_COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return shop_main(__doc__, run, table, argv)


if __name__ == "__main__":
    sys.exit(main())
