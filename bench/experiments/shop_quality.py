"""Retrieval quality on shop-style photos: dyed garments, catalog shots and shoppers' shots.

    python -m bench.experiments.shop_quality [--quick] [--sheet docs/shop_sheet.png] [--json rows.json]
        [--product] [--no-clean] [--seed N]

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

Finally the chosen configuration is measured on clean Fashion-MNIST as
bench/experiments/clean_quality.py does it (train split 200 per class, test split 100 per
class, undyed, dark on white), with its projection fitted on that catalog plus shopper-style
views of it.

Vectors are cached under ``$LOOKALIKE_DATA_DIR/cache-shop`` keyed by the pictures' parameters,
the policy and the model, so a rerun only embeds what changed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bench.common import data_dir
from bench.experiments.shop_catalog_cv import choose, choose_as_catalog
from bench.experiments.shop_configurations import PRODUCT_NAME, configurations, product_configurations
from bench.experiments.shop_embeddings import Photos
from bench.experiments.shop_pictures import (
    FULL,
    QUICK,
    ShopData,
    Sizes,
    make_clean_data,
    make_shop_data,
    product_views,
)
from bench.experiments.shop_spaces import (
    Config,
    Inputs,
    K,
    format_params,
    load_inputs,
    measure,
    measure_product_pages,
)
from similarity.evaluation.fashion_mnist import CLASS_NAMES
from similarity.evaluation.shots import DYE_NAMES

SHEET_CLASSES = (0, 1, 2, 3, 4, 5, 7, 8)
GREEN, ORANGE, RED = (0, 160, 0), (235, 140, 0), (215, 0, 0)


def run(sizes: Sizes, *, seed: int = 0, sheet: Path | None = None, clean: bool = True,
        log: Callable[[str], None] | None = None, product: bool = False) -> dict:
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.perf_counter()
    cache = Path(os.environ.get("LOOKALIKE_SHOP_CACHE", data_dir() / "cache-shop"))
    photos = Photos(cache, log)
    data = make_shop_data(sizes, seed)
    log(f"catalog {len(data.catalog)}, queries {len(data.queries)}, re-shots {len(data.reshots)}, "
        f"views {len(data.views)} x {len(data.catalog)}; cache {cache}")
    inputs: dict[str, Inputs] = {}
    rows, ranked_by = [], {}
    pages: list[dict] = []  # --product: the product-page lists, across and inside categories
    configs = product_configurations() if product else configurations()
    for config in configs:
        n_views = len(data.views) if config.space.startswith("robust") else 1
        is_product = config.name == PRODUCT_NAME
        key = f"{config.policy}/{n_views}/{is_product}"
        used = product_views(data, seed) if is_product else data
        if key not in inputs:
            inputs[key] = load_inputs(photos, used, config.policy, views=n_views)
        inp = inputs[key]
        choose(config, used, inp, log)
        row, ranked = measure(config, used, inp)
        rows.append(row)
        ranked_by[config.name] = ranked
        if is_product:
            pages = [measure_product_pages(config, used, inp, within=w) for w in (False, True)]
        log(f"  {config.name}: P@10 {row['precision_at_10']:.3f}, colour@10 {row['colour_at_10']:.3f}, "
            f"cat+colour@10 {row['category_colour_at_10']:.3f}, re-find@1 {row['recall_at_1']:.3f} "
            f"(catalog CV {row['catalog_cv']}) [{time.perf_counter() - started:.0f} s]")
    chosen = rows[-1]
    result: dict = {"rows": rows, "sizes": asdict(sizes), "seed": seed}
    if pages:
        result["product_pages"] = pages
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
        data = product_views(clean, seed) if config.name == PRODUCT_NAME else clean
        inp = load_inputs(photos, data, config.policy,
                          views=len(data.views) if config.space.startswith("robust") else 0,
                          cv_colours=False)
        if config.auto_colour:  # the clean catalog chooses its own colour weight
            config.params = {k: v for k, v in p.items() if k != "colour_weight"}
            choose_as_catalog(config, data, inp, log)
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
            f"| {r['configuration']} | {r['preprocessing']} | {r['space']} ({format_params(r['params'])}) "
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
    if "product_pages" in result:
        lines += ["", "Product-page lists (each catalog garment's 10 nearest; re-shots searched "
                  "across the catalog or inside their garment's category):", "",
                  "| lists | category P@10 | colour@10 | re-shot recall@1 |", "|---|---|---|---|"]
        for r in result["product_pages"]:
            lines.append(f"| {r['lists']} | **{_f(r['precision_at_10'])}** | **{_f(r['colour_at_10'])}** "
                         f"| **{_f(r.get('recall_at_1'))}** |")
    if "clean" in result:
        lines += ["", "Clean Fashion-MNIST, held out (undyed, centred; parameters as chosen above):", "",
                  "| configuration | preprocessing | space | P@10 | mAP@10 |", "|---|---|---|---|---|"]
        for r in result["clean"]:
            lines.append(f"| {r['configuration']} | {r['preprocessing']} "
                         f"| {r['space']} ({format_params(r['params'])}) "
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
