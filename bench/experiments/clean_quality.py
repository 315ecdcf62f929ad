"""Retrieval quality on Fashion-MNIST: the original notebook, the reference and the improvements.

    python -m bench.experiments.clean_quality [--quick] [--sheet out.png] [--json out.json] [--shop]

``--shop`` also runs the shop-photo experiment (bench/experiments/shop_quality.py: dyed
garments, catalog and shopper-style shots, colour and re-find metrics).

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
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import sq_distances
from bench.experiments.clean_duplicates import duplicates_rows
from bench.experiments.clean_inputs import (
    MARGINS,
    NOTEBOOK,
    PAD_SQUARE,
    TORCHVISION,
    Data,
    Embeddings,
    Input,
    K,
    load_data,
)
from bench.experiments.clean_scores import quality_row, score, visual_agreement
from bench.experiments.clean_spaces import (
    CV_TIE,
    Space,
    choose_blend,
    choose_lda,
    choose_pca_whitening,
    cosine_fitter,
    plain_space,
    raw_fitter,
)
from similarity.embedding.projection import cross_validated_precision
from similarity.evaluation.fashion_mnist import CLASS_NAMES, to_photo
from similarity.evaluation.metrics import rank

SHEET_CLASSES = (0, 2, 3, 4, 6, 7, 8, 9)  # one sample query from each of these categories
# Catalog visual orders closer than this count as tied when choosing the best configuration.
VISUAL_TIE = 0.05

Log = Callable[[str], None]


class CleanRun:
    """One run's photos, embeddings and measured configurations."""

    def __init__(self, data: Data, log: Log, started: float) -> None:
        self.data = data
        self.log = log
        self.started = started
        self.cat_photos = [to_photo(im) for im in data.catalog]
        self.query_photos = [to_photo(im) for im in data.queries]
        self.emb = Embeddings()
        self.measured: dict[str, tuple[Input, Space, np.ndarray]] = {}

    def vectors(self, inp: Input) -> tuple[np.ndarray, np.ndarray]:
        c = self.emb.photos_vectors(inp, "catalog", self.cat_photos)
        q = self.emb.photos_vectors(inp, "queries", self.query_photos)
        return c, q

    def catalog_space(self, name: str, fitter: Callable, inp: Input) -> Space:
        """A space with nothing to choose, cross-validated on ``inp``'s catalog vectors."""
        return plain_space(name, fitter, self.vectors(inp)[0], self.data.catalog_labels, self.data.folds)

    def measure(self, inp: Input, space: Space, name: str) -> dict:
        yc, yq = self.data.catalog_labels, self.data.query_labels
        c, q = self.vectors(inp)
        transform = space.fit(c, yc)  # fitted on the catalog only
        zc, zq = transform(c), transform(q)
        ranked = rank(sq_distances(zq, zc), K)
        self.measured[name] = (inp, space, ranked)
        row = quality_row(name, inp, space, score(ranked, yc, yq),
                          visual_order=visual_agreement(zq, zc, q, c, yq, yc),
                          catalog_visual_order=visual_agreement(zc, zc, c, c, yc, yc, same_set=True))
        self.log(f"  {name}: P@10 {row['precision_at_10']:.3f} (catalog CV {space.cv:.3f}, visual order "
                 f"{row['catalog_visual_order']:.2f}) [{time.perf_counter() - self.started:.0f} s]")
        return row


def baseline_rows(r: CleanRun) -> tuple[list[dict], Space]:
    """1. The original notebook and the reference; 2. each improvement alone (on the reference
    preprocessing, or the reference metric). Also returns the reference's LDA space."""
    yc, folds = r.data.catalog_labels, r.data.folds
    rows = [r.measure(NOTEBOOK, r.catalog_space("euclidean", raw_fitter, NOTEBOOK),
                      "original notebook (baseline)"),
            r.measure(TORCHVISION, r.catalog_space("euclidean", raw_fitter, TORCHVISION), "reference"),
            r.measure(PAD_SQUARE, r.catalog_space("euclidean", raw_fitter, PAD_SQUARE),
                      "+ pad-square preprocessing")]
    margin_spaces = [(m, r.catalog_space("euclidean", raw_fitter, m)) for m in MARGINS]
    margin, margin_raw = max(margin_spaces, key=lambda t: -1.0 if t[1].cv is None else t[1].cv)  # by CV
    # (the combined rows below choose among all the inputs again, under the projection)
    rows.append(r.measure(margin, margin_raw, "+ pad-square with a margin (scale by CV)"))
    c_ref = r.vectors(TORCHVISION)[0]
    rows.append(r.measure(TORCHVISION, plain_space("cosine", cosine_fitter, c_ref, yc, folds),
                          "+ L2-normalised (cosine)"))
    rows.append(r.measure(TORCHVISION, choose_pca_whitening(c_ref, yc, folds), "+ PCA whitening (catalog)"))
    lda_ref = choose_lda(c_ref, yc, folds)
    rows.append(r.measure(TORCHVISION, lda_ref, "+ LDA on catalog labels"))
    rows.append(r.measure(TORCHVISION, choose_blend(c_ref, yc, folds, lda_ref), "+ LDA blended with cosine"))
    return rows, lda_ref


def best_input(r: CleanRun, lda_ref: Space) -> Input:
    """The preprocessing chosen by catalog CV under the learned projection (the LDA parameters
    chosen on the reference input): on raw distances the inputs differ by less than the noise,
    after the projection they separate more."""
    yc, folds = r.data.catalog_labels, r.data.folds
    inputs = [TORCHVISION, PAD_SQUARE, *MARGINS]
    lda_cv = {inp: cross_validated_precision(r.vectors(inp)[0], yc, lda_ref.fitter, k=K, folds=folds)
              for inp in inputs}
    r.log("  catalog CV under " + lda_ref.name + ": "
          + ", ".join(f"{inp.label} {cv:.3f}" for inp, cv in lda_cv.items()))
    best = max(inputs, key=lambda inp: lda_cv[inp])  # ties: the earlier input
    r.log(f"  preprocessing chosen by catalog CV: {best.label}")
    return best


def combined_rows(r: CleanRun, lda_ref: Space) -> list[dict]:
    """3. Combined: the chosen preprocessing under each learned space."""
    yc, folds = r.data.catalog_labels, r.data.folds
    inp = best_input(r, lda_ref)
    c_best = r.vectors(inp)[0]
    combined = [
        ("combined: preprocessing + cosine + PCA whitening", choose_pca_whitening(c_best, yc, folds)),
    ]
    lda_best = lda_ref if inp is TORCHVISION else choose_lda(c_best, yc, folds)
    combined += [
        ("combined: preprocessing + LDA", lda_best),
        ("combined: preprocessing + LDA blended with cosine", choose_blend(c_best, yc, folds, lda_best)),
    ]
    return [r.measure(inp, space, name) for name, space in combined]


def mark_best(rows: list[dict], log: Log) -> dict:
    """The best configuration, from catalog figures only (never the test ones): rows within
    CV_TIE of the best catalog CV precision are tied; among them, those keeping the plain
    visual order inside a category (on the catalog) within VISUAL_TIE of the best; of
    those, the best catalog CV (then the earlier, simpler row)."""
    top_cv = max(r["catalog_cv_precision_at_10"] for r in rows)
    tied = [r for r in rows if r["catalog_cv_precision_at_10"] >= top_cv - CV_TIE]
    top_visual = max(r["catalog_visual_order"] for r in tied)
    best_row = max((r for r in tied if r["catalog_visual_order"] >= top_visual - VISUAL_TIE),
                   key=lambda r: r["catalog_cv_precision_at_10"])
    for r in rows:
        r["chosen"] = r is best_row
    log(f"  best: {best_row['configuration']} (tied within {CV_TIE} of the best catalog CV: "
        f"{', '.join(r['configuration'] for r in tied)})")
    return best_row


def run(quick: bool = False, *, sheet: Path | None = None, log: Log | None = None) -> list[dict]:
    """Measure every configuration; return one dict per table row (see ``table``)."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.perf_counter()
    data = load_data(quick)
    r = CleanRun(data, log, started)
    log(f"catalog {len(data.catalog_labels)} (train split), queries {len(data.query_labels)} (test split), "
        f"{data.folds}-fold CV in the catalog")
    rows, lda_ref = baseline_rows(r)
    rows += combined_rows(r, lda_ref)
    best_inp, best_space, best_ranked = r.measured[mark_best(rows, log)["configuration"]]
    # 4. Near-duplicates: copy every 10th catalog garment and measure the list places the copies
    #    take, without and with collapsing.
    rows += duplicates_rows(data, r.cat_photos, best_inp, best_space, r.emb, r.vectors, log)
    if sheet is not None:
        draw(sheet, data, best_ranked)
        log(f"  sheet written to {sheet}")
    log(f"embedded {r.emb.images} images in {r.emb.seconds:.0f} s; "
        f"total {time.perf_counter() - r.started:.0f} s")
    return rows


def draw(path: Path, data: Data, ranked: np.ndarray) -> None:
    """8 sample queries and their 10 neighbours: green = same category, red = another."""
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
                        help="also run the shop-photo benchmark (bench/experiments/shop_quality.py); "
                        "with --sheet, its colour sheet goes next to it as shop_sheet.png")
    args = parser.parse_args(argv)
    rows = run(args.quick, sheet=args.sheet)
    n_q = rows[0]["n"]
    print(f"Held-out queries: {n_q} (test split); k = {K}; higher is better.\n")
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    if args.shop:
        from bench.experiments import shop_quality

        shop_args = ["--quick"] if args.quick else []
        if args.sheet is not None:
            shop_args += ["--sheet", str(args.sheet.with_name("shop_sheet.png"))]
        print("\nShop-style photos (bench/experiments/shop_quality.py):\n")
        return shop_quality.main(shop_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
