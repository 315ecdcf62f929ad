"""Retrieval quality on Fashion-MNIST: the original notebook, the reference and the improvements.

    python bench/quality.py [--quick] [--sheet out.png] [--json out.json] [--shop]

``--shop`` also runs the shop-photo benchmark (bench/shop_photos.py: dyed garments, catalog
and shopper-style shots, colour and re-find metrics).

No database. The catalog is Fashion-MNIST's train split, 200 garments per class (2,000);
the queries are held out, from the test split, 100 per class (1,000). ``--quick`` uses 40
and 20 per class. Every configuration's precision@10 and mAP@10 (definitions in
similarity/evaluation/metrics.py) are measured on the held-out queries; nothing fitted and no
hyper-parameter chosen ever sees a test-split label: learned transforms are fitted on the
catalog, and hyper-parameters (PCA dimensions, LDA shrinkage, the margin of the
preprocessing, the blend weight, which configuration is best) are chosen by stratified
k-fold cross-validation inside the catalog (held-out catalog items query the rest of it).
That catalog-only figure is printed too ("catalog CV").

Images are embedded once per preprocessing (cached in memory for the run) by the converted
LiteRT model, which is fixed at 224x224 inputs.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from similarity.embedding.preprocess import INPUT_SIZE, PreprocessPolicy, get_policy  # noqa: E402
from similarity.embedding.projection import (  # noqa: E402
    cross_validated_precision,
    fit_blend,
    fit_lda,
    fit_pca_whitening,
    l2_normalise,
    select_by_cross_validation,
)
from similarity.evaluation.fashion_mnist import CLASS_NAMES, balanced_indices, load_split, to_photo  # noqa: E402
from similarity.evaluation.metrics import QualityReport, evaluate, rank  # noqa: E402
from similarity.index.dedup import collapse, duplicate_groups  # noqa: E402

K = 10
CHUNK = 128  # images prepared and embedded at a time (a 224x224x3 float32 batch is 77 MB)
# Cosine distance under which two catalog items count as the same picture (similarity/index/dedup.py).
DUPLICATE_THRESHOLD = 0.01
SHEET_CLASSES = (0, 2, 3, 4, 6, 7, 8, 9)  # one sample query from each of these categories
# Catalog-CV precisions closer than this count as tied (about one standard error with 2,000
# catalog queries); the tie-break is the visual order kept inside a category.
CV_TIE = 0.005
VISUAL_TIE = 0.05


# ---------------------------------------------------------------------------------------------
# Data and inputs


@dataclass(frozen=True)
class Data:
    catalog: np.ndarray  # (N, 28, 28) uint8, light on black as in the dataset
    catalog_labels: np.ndarray
    queries: np.ndarray
    query_labels: np.ndarray
    folds: int


def load_data(quick: bool) -> Data:
    per_catalog, per_query = (40, 20) if quick else (200, 100)
    train_x, train_y = load_split("train")
    test_x, test_y = load_split("test")
    ci = balanced_indices(train_y, per_catalog)
    qi = balanced_indices(test_y, per_query)
    return Data(train_x[ci], train_y[ci].astype(np.int64), test_x[qi], test_y[qi].astype(np.int64),
                folds=4)


def _notebook_array(img: Image.Image) -> np.ndarray:
    """The notebook's scaling: RGB / 255, no ImageNet mean/std (a plain resize to 224)."""
    img = img.convert("RGB")
    if img.size != (INPUT_SIZE, INPUT_SIZE):
        img = img.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


def _pad_with_margin(scale: float) -> Callable[[Image.Image], Image.Image]:
    """pad-square@1's picture, shrunk to ``scale`` of the side inside a white 224 square."""
    pad_square = get_policy("pad-square@1").geometry

    def geometry(img: Image.Image) -> Image.Image:
        side = round(INPUT_SIZE * scale)
        small = pad_square(img).resize((side, side), Image.Resampling.BILINEAR)
        canvas = Image.new("RGB", (INPUT_SIZE, INPUT_SIZE), (255, 255, 255))
        canvas.paste(small, ((INPUT_SIZE - side) // 2, (INPUT_SIZE - side) // 2))
        return canvas

    return geometry


def _margin_policy(scale: float) -> PreprocessPolicy:
    # Not registered in similarity.embedding.preprocess: a candidate measured here only.
    return PreprocessPolicy(name=f"pad-square-margin-{scale:g}", version=0, geometry=_pad_with_margin(scale),
                            draft_size=(INPUT_SIZE, INPUT_SIZE),
                            description=f"pad-square, then the garment at {scale:.0%} of a white square")


@dataclass(frozen=True)
class Input:
    key: str
    label: str
    to_array: Callable[[Image.Image], np.ndarray]


NOTEBOOK = Input("notebook", "/255 at 224 (notebook)", _notebook_array)
TORCHVISION = Input("torchvision@1", "torchvision@1", get_policy("torchvision@1").to_array)
PAD_SQUARE = Input("pad-square@1", "pad-square@1", get_policy("pad-square@1").to_array)
MARGINS = tuple(
    Input(f"pad-square+margin{s:g}", f"pad-square, garment at {s:.1%}", _margin_policy(s).to_array)
    for s in (0.875, 0.75)
)


class Embeddings:
    """Embeds images under an input once per run (kept in memory)."""

    def __init__(self) -> None:
        from bench.common import model_dir
        from similarity.embedding.runtime import LiteRTEmbedder

        self._model = LiteRTEmbedder(model_dir(), batch_size=64)
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self.images = 0
        self.seconds = 0.0

    def photos_vectors(self, inp: Input, what: str, photos: list[Image.Image]) -> np.ndarray:
        key = (inp.key, what)
        if key not in self._cache:
            start = time.perf_counter()
            out = np.empty((len(photos), 1280), dtype=np.float32)
            for i in range(0, len(photos), CHUNK):
                batch = np.stack([inp.to_array(p) for p in photos[i : i + CHUNK]])
                out[i : i + len(batch)] = self._model.embed(batch)
            self._cache[key] = out
            self.images += len(photos)
            self.seconds += time.perf_counter() - start
        return self._cache[key]


# ---------------------------------------------------------------------------------------------
# Spaces: how raw vectors become the vectors compared by euclidean distance


Transform = Callable[[np.ndarray], np.ndarray]
Fitter = Callable[[np.ndarray, np.ndarray], Transform]


def _raw(x: np.ndarray, y: np.ndarray) -> Transform:
    return lambda v: np.asarray(v, dtype=np.float64)


def _cosine(x: np.ndarray, y: np.ndarray) -> Transform:
    return l2_normalise


@dataclass
class Space:
    """A named way to compare vectors; ``choose`` picks hyper-parameters on the catalog only."""

    name: str
    fitter: Fitter
    params: dict = field(default_factory=dict)
    cv: float | None = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> Transform:
        return self.fitter(x, y)


def _pca_grid(n_train: int) -> dict:
    dims = [d for d in (64, 128, 256) if d < n_train - 1] or [n_train // 2]
    return {"dim": dims, "power": [0.5, 0.25]}


def _lda_grid(n_train: int, classes: int) -> dict:
    dims = [d for d in (256, 512, 1024) if d <= n_train - classes] or [max(classes, n_train // 2)]
    return {"pca_dim": dims, "shrinkage": [0.02, 0.05, 0.15]}


def choose_pca_whitening(x: np.ndarray, y: np.ndarray, folds: int) -> Space:
    n_train = len(y) * (folds - 1) // folds

    def make(dim: int, power: float) -> Fitter:
        return lambda a, b: fit_pca_whitening(a, dim=dim, power=power)

    best, score, _ = select_by_cross_validation(x, y, make, _pca_grid(n_train), k=K, folds=folds)
    return Space("cosine, PCA-whitened", make(**best), best, score)


def choose_lda(x: np.ndarray, y: np.ndarray, folds: int) -> Space:
    n_train = len(y) * (folds - 1) // folds

    def make(pca_dim: int, shrinkage: float) -> Fitter:
        return lambda a, b: fit_lda(a, b, pca_dim=pca_dim, shrinkage=shrinkage)

    grid = _lda_grid(n_train, len(np.unique(y)))
    best, score, _ = select_by_cross_validation(x, y, make, grid, k=K, folds=folds)
    return Space("cosine, LDA", make(**best), best, score)


def choose_blend(x: np.ndarray, y: np.ndarray, folds: int, lda: Space) -> Space:
    """LDA (its parameters as chosen) blended with the cosine space. The weight: the smallest
    (most visual order kept) whose catalog CV is within CV_TIE of the best weight's."""

    def make(weight: float) -> Fitter:
        return lambda a, b: fit_blend(a, b, weight=weight, **lda.params)

    _, top, tried = select_by_cross_validation(x, y, make, {"weight": [1.0, 2.0, 4.0]}, k=K, folds=folds)
    params, score = next((p, s) for p, s in tried if s >= top - CV_TIE)  # grid in increasing weight
    return Space("LDA + cosine blend", make(**params), {**lda.params, **params}, score)


def _simple(name: str, fitter: Fitter, x: np.ndarray, y: np.ndarray, folds: int) -> Space:
    return Space(name, fitter, {}, cross_validated_precision(x, y, fitter, k=K, folds=folds))


# ---------------------------------------------------------------------------------------------
# Scoring


def sq_distances(queries: np.ndarray, catalog: np.ndarray) -> np.ndarray:
    """Squared euclidean (same order as euclidean), float64 throughout, as the notebook."""
    q = np.asarray(queries, dtype=np.float64)
    c = np.asarray(catalog, dtype=np.float64)
    return np.maximum((q * q).sum(1)[:, None] + (c * c).sum(1)[None, :] - 2.0 * q @ c.T, 0.0)


def _row_ranks(d: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(d, axis=1, kind="stable"), axis=1, kind="stable").astype(np.float64)


def visual_agreement(zq: np.ndarray, zc: np.ndarray, rq: np.ndarray, rc: np.ndarray,
                     yq: np.ndarray, yc: np.ndarray, *, same_set: bool = False) -> float:
    """How much of the plain visual order survives inside a category.

    Per query, the Spearman correlation between its distances to the catalog items of its
    own category in the configuration's space (``zq``, ``zc``) and in the plain cosine space
    of the raw vectors (``rq``, ``rc``); the mean over queries. 1 = the same order as plain
    cosine. A class-aware projection can raise precision while ordering the garments of a
    category almost arbitrarily; this shows it. ``same_set``: queries are the catalog itself
    (each item's own entry is left out).
    """
    total, count = 0.0, 0
    for cls in np.unique(yq):
        qi, ci = np.flatnonzero(yq == cls), np.flatnonzero(yc == cls)
        if ci.size < 3:
            continue
        d1 = sq_distances(zq[qi], zc[ci])
        d0 = sq_distances(l2_normalise(rq[qi]), l2_normalise(rc[ci]))
        if same_set:
            keep = ~np.eye(qi.size, dtype=bool)
            d1, d0 = d1[keep].reshape(qi.size, -1), d0[keep].reshape(qi.size, -1)
        a, b = _row_ranks(d1), _row_ranks(d0)
        a -= a.mean(1, keepdims=True)
        b -= b.mean(1, keepdims=True)
        corr = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))
        total += float(corr.sum())
        count += qi.size
    return total / count


def score(ranked: np.ndarray, data_labels: np.ndarray, query_labels: np.ndarray) -> QualityReport:
    padded = np.where(ranked >= 0, data_labels[np.maximum(ranked, 0)], -1)
    return evaluate(query_labels, padded, catalog_labels=data_labels, k=K)


def _cat(entry: tuple) -> str:
    cls, s = entry
    return f"{CLASS_NAMES[int(cls)]} {s.precision:.2f}"


def _row(name: str, inp: Input, space: Space, report: QualityReport, **extra: object) -> dict:
    return {
        "configuration": name,
        "preprocessing": inp.label,
        "space": space.name,
        "params": space.params,
        "catalog_cv_precision_at_10": space.cv,
        "precision_at_10": report.precision,
        "map_at_10": report.map,
        "worst": _cat(report.worst()),
        "best": _cat(report.best()),
        "n": report.n,
        **extra,
    }


# ---------------------------------------------------------------------------------------------
# Near-duplicates


def _reuploaded(image28: np.ndarray) -> Image.Image:
    """The same garment uploaded again as a different file: an 800x800 JPEG (quality 85)."""
    buf = io.BytesIO()
    to_photo(image28, size=800).save(buf, format="JPEG", quality=85)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def duplicate_slots(ranked: np.ndarray, true_groups: np.ndarray) -> np.ndarray:
    """Per list, the places taken by a copy of an item already listed higher."""
    out = np.zeros(ranked.shape[0], dtype=np.int64)
    for q, row in enumerate(ranked.tolist()):
        seen: set[int] = set()
        for item in row:
            if item < 0:
                continue
            g = int(true_groups[item])
            out[q] += g in seen
            seen.add(g)
    return out


# ---------------------------------------------------------------------------------------------
# The run


def run(quick: bool = False, *, sheet: Path | None = None, log: Callable[[str], None] | None = None
        ) -> list[dict]:
    """Measure every configuration; return one dict per table row (see ``table``)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.perf_counter()
    data = load_data(quick)
    yc, yq, folds = data.catalog_labels, data.query_labels, data.folds
    cat_photos = [to_photo(im) for im in data.catalog]
    query_photos = [to_photo(im) for im in data.queries]
    emb = Embeddings()

    def vectors(inp: Input) -> tuple[np.ndarray, np.ndarray]:
        c = emb.photos_vectors(inp, "catalog", cat_photos)
        q = emb.photos_vectors(inp, "queries", query_photos)
        return c, q

    measured: dict[str, tuple[Input, Space, np.ndarray]] = {}

    def measure(inp: Input, space: Space, name: str) -> tuple[dict, np.ndarray]:
        c, q = vectors(inp)
        transform = space.fit(c, yc)  # fitted on the catalog only
        zc, zq = transform(c), transform(q)
        ranked = rank(sq_distances(zq, zc), K)
        measured[name] = (inp, space, ranked)
        row = _row(name, inp, space, score(ranked, yc, yq),
                   visual_order=visual_agreement(zq, zc, q, c, yq, yc),
                   catalog_visual_order=visual_agreement(zc, zc, c, c, yc, yc, same_set=True))
        log(f"  {name}: P@10 {row['precision_at_10']:.3f} (catalog CV {space.cv:.3f}, visual order "
            f"{row['catalog_visual_order']:.2f}) [{time.perf_counter() - started:.0f} s]")
        return row, ranked

    rows: list[dict] = []
    log(f"catalog {len(yc)} (train split), queries {len(yq)} (test split), {folds}-fold CV in the catalog")

    # 1. The original notebook and the reference.
    raw = _simple("euclidean", _raw, vectors(NOTEBOOK)[0], yc, folds)
    rows.append(measure(NOTEBOOK, raw, "original notebook (baseline)")[0])
    ref_raw = _simple("euclidean", _raw, vectors(TORCHVISION)[0], yc, folds)
    rows.append(measure(TORCHVISION, ref_raw, "reference")[0])

    # 2. Each improvement alone (on the reference preprocessing, or the reference metric).
    pad_raw = _simple("euclidean", _raw, vectors(PAD_SQUARE)[0], yc, folds)
    rows.append(measure(PAD_SQUARE, pad_raw, "+ pad-square preprocessing")[0])
    margin_spaces = [(m, _simple("euclidean", _raw, vectors(m)[0], yc, folds)) for m in MARGINS]
    margin, margin_raw = max(margin_spaces, key=lambda t: -1.0 if t[1].cv is None else t[1].cv)  # by CV
    # (the combined rows below choose among all the inputs again, under the projection)
    rows.append(measure(margin, margin_raw, "+ pad-square with a margin (scale by CV)")[0])
    c_ref = vectors(TORCHVISION)[0]
    cosine_ref = _simple("cosine", _cosine, c_ref, yc, folds)
    rows.append(measure(TORCHVISION, cosine_ref, "+ L2-normalised (cosine)")[0])
    rows.append(measure(TORCHVISION, choose_pca_whitening(c_ref, yc, folds), "+ PCA whitening (catalog)")[0])
    lda_ref = choose_lda(c_ref, yc, folds)
    rows.append(measure(TORCHVISION, lda_ref, "+ LDA on catalog labels")[0])
    rows.append(measure(TORCHVISION, choose_blend(c_ref, yc, folds, lda_ref), "+ LDA blended with cosine")[0])

    # 3. Combined. The preprocessing is chosen by catalog CV under the learned projection (the
    #    LDA parameters chosen on the reference input): on raw distances the inputs differ by
    #    less than the noise, after the projection they separate more.
    inputs = [TORCHVISION, PAD_SQUARE, *MARGINS]
    lda_cv = {inp: cross_validated_precision(vectors(inp)[0], yc, lda_ref.fitter, k=K, folds=folds)
              for inp in inputs}
    log("  catalog CV under " + lda_ref.name + ": "
        + ", ".join(f"{inp.label} {cv:.3f}" for inp, cv in lda_cv.items()))
    best_input = max(inputs, key=lambda inp: lda_cv[inp])  # ties: the earlier input
    c_best = vectors(best_input)[0]
    log(f"  preprocessing chosen by catalog CV: {best_input.label}")
    combined = [
        ("combined: preprocessing + cosine + PCA whitening", choose_pca_whitening(c_best, yc, folds)),
    ]
    lda_best = lda_ref if best_input is TORCHVISION else choose_lda(c_best, yc, folds)
    combined += [
        ("combined: preprocessing + LDA", lda_best),
        ("combined: preprocessing + LDA blended with cosine", choose_blend(c_best, yc, folds, lda_best)),
    ]
    for name, space in combined:
        rows.append(measure(best_input, space, name)[0])

    # The best configuration, from catalog figures only (never the test ones): rows within
    # CV_TIE of the best catalog CV precision are tied; among them, those keeping the plain
    # visual order inside a category (on the catalog) within VISUAL_TIE of the best; of
    # those, the best catalog CV (then the earlier, simpler row).
    top_cv = max(r["catalog_cv_precision_at_10"] for r in rows)
    tied = [r for r in rows if r["catalog_cv_precision_at_10"] >= top_cv - CV_TIE]
    top_visual = max(r["catalog_visual_order"] for r in tied)
    best_row = max((r for r in tied if r["catalog_visual_order"] >= top_visual - VISUAL_TIE),
                   key=lambda r: r["catalog_cv_precision_at_10"])
    for r in rows:
        r["chosen"] = r is best_row
    log(f"  best: {best_row['configuration']} (tied within {CV_TIE} of the best catalog CV: "
        f"{', '.join(r['configuration'] for r in tied)})")
    best_inp, best_space, best_ranked = measured[best_row["configuration"]]

    # 4. Near-duplicates: copy every 10th catalog garment (half the same file again, half
    #    re-uploaded as an 800x800 JPEG) and measure the list places the copies take, without
    #    and with collapsing.
    rows += duplicates_rows(data, cat_photos, best_inp, best_space, emb, vectors, log)

    if sheet is not None:
        draw(sheet, data, best_ranked)
        log(f"  sheet written to {sheet}")
    log(f"embedded {emb.images} images in {emb.seconds:.0f} s; total {time.perf_counter() - started:.0f} s")
    return rows


def duplicates_rows(data: Data, cat_photos: list[Image.Image], inp: Input, space: Space,
                    emb: Embeddings, vectors: Callable, log: Callable[[str], None]) -> list[dict]:
    yc, yq = data.catalog_labels, data.query_labels
    c, q = vectors(inp)
    originals = np.arange(0, len(yc), 10)
    same_file, resaved = originals[0::2], originals[1::2]
    copy_photos = [cat_photos[i] for i in same_file] + [_reuploaded(data.catalog[i]) for i in resaved]
    copies = emb.photos_vectors(inp, "copies", copy_photos)
    c_dup = np.vstack([c, copies])
    y_dup = np.concatenate([yc, yc[np.concatenate([same_file, resaved])]])
    true_groups = np.concatenate([np.arange(len(yc)), same_file, resaved])

    # Copy-to-original distances against the closest distinct garments, on raw cosine.
    cos = l2_normalise(c_dup)
    copy_d = 1.0 - (cos[len(yc):] * cos[true_groups[len(yc):]]).sum(1)
    sims = cos[: len(yc)] @ cos[: len(yc)].T
    np.fill_diagonal(sims, -np.inf)
    nn_d = 1.0 - sims.max(1)
    log(f"  duplicates: copy->original cosine distance max {copy_d.max():.4f}; distinct garments' "
        f"nearest-neighbour distance min {nn_d.min():.4f}, 1st percentile {np.percentile(nn_d, 1):.4f}")

    transform = space.fit(c, yc)  # fitted on the catalog without the copies
    ranked = rank(sq_distances(transform(q), transform(c_dup)), 3 * K)
    groups = duplicate_groups(c_dup, DUPLICATE_THRESHOLD)
    missed = int((groups[len(yc):] != groups[true_groups[len(yc):]]).sum())
    false_merges = sum(len(set(true_groups[groups == g].tolist())) > 1 for g in np.unique(groups))
    log(f"  duplicate groups at cosine distance <= {DUPLICATE_THRESHOLD}: {missed} of {len(copy_photos)} "
        f"copies missed, {false_merges} groups joining distinct garments")
    out = []
    for collapsed in (False, True):
        top = collapse(ranked, groups, K) if collapsed else ranked[:, :K]
        slots = duplicate_slots(top, true_groups)
        report = score(top, y_dup, yq)
        name = ("duplicates in the catalog, collapsed" if collapsed
                else "duplicates in the catalog, not collapsed")
        row = _row(name, inp, space, report, duplicate_slots=float(slots.mean()),
                   lists_with_duplicates=float((slots > 0).mean()), copies=len(copy_photos),
                   missed_copies=missed if collapsed else None,
                   false_merges=false_merges if collapsed else None)
        row["catalog_cv_precision_at_10"] = None
        out.append(row)
        log(f"  {name}: {slots.mean():.3f} places per list taken by copies, "
            f"{(slots > 0).mean():.1%} of lists have one")
    return out


def draw(path: Path, data: Data, ranked: np.ndarray) -> None:
    from similarity.evaluation.contact_sheet import SheetLayout, SheetRow, SheetTile, draw_sheet

    green, red = (0, 160, 0), (215, 0, 0)
    yc, yq = data.catalog_labels, data.query_labels
    picks = [int(np.flatnonzero(yq == cls)[0]) for cls in SHEET_CLASSES]
    rows = []
    for qi in picks:
        tiles = []
        for r, ci in enumerate(ranked[qi, :K].tolist(), start=1):
            ok = yc[ci] == yq[qi]
            tiles.append(SheetTile(to_photo(data.catalog[ci], 112), f"#{r} {CLASS_NAMES[yc[ci]]}",
                                   green if ok else red))
        hits = int((yc[ranked[qi, :K]] == yq[qi]).sum())
        rows.append(SheetRow(to_photo(data.queries[qi], 112),
                             tiles, caption=f"query: {CLASS_NAMES[yq[qi]]}\n{hits}/10 correct"))
    sheet = draw_sheet(rows, SheetLayout(tile=96, pad=8, gap=24, frame_width=4, font_size=12))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, format="PNG")


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(rows: list[dict]) -> str:
    lines = [
        "| configuration | preprocessing | distance space (chosen parameters) | catalog CV P@10 "
        "| **P@10** | mAP@10 | worst category | best category | visual order kept "
        "| copies' places per list |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        params = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in r["params"].items())
        space = r["space"] + (f" ({params})" if params else "")
        name = r["configuration"] + (" ← best" if r.get("chosen") else "")
        lines.append(
            f"| {name} | {r['preprocessing']} | {space} | {_fmt(r['catalog_cv_precision_at_10'])} "
            f"| **{_fmt(r['precision_at_10'])}** | {_fmt(r['map_at_10'])} | {r['worst']} | {r['best']} "
            f"| {_fmt(r.get('visual_order'), 2)} | {_fmt(r.get('duplicate_slots'), 2)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40/20 garments per class instead of 200/100")
    parser.add_argument("--sheet", type=Path, default=None,
                        help="also draw 8 sample queries and their neighbours under the best configuration")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument("--shop", action="store_true",
                        help="also run the shop-photo benchmark (bench/shop_photos.py); with --sheet, "
                        "its colour sheet goes next to it as shop_sheet.png")
    args = parser.parse_args(argv)
    rows = run(args.quick, sheet=args.sheet)
    n_q = rows[0]["n"]
    print(f"Held-out queries: {n_q} (test split); k = {K}; higher is better.\n")
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    if args.shop:
        from bench import shop_photos

        shop_args = ["--quick"] if args.quick else []
        if args.sheet is not None:
            shop_args += ["--sheet", str(args.sheet.with_name("shop_sheet.png"))]
        print("\nShop-style photos (bench/shop_photos.py):\n")
        return shop_photos.main(shop_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
