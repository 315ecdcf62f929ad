"""The cost of keeping lists inside categories on the scale bench's add, remove and search.

    python -m bench.category_bench [--n N] [--repeats R] [--runs S] [--quick]

Vectors: the scale bench's (real Fashion-MNIST embeddings repeated with small noise,
``bench.scale_bench.bench_vectors``); each copy keeps its garment's class as its category (10
categories of about N/10). Both indexes are persisted top-k stores built exactly, in one run:

- **across the catalog**: one ``MatrixStore`` (the rule-free reference);
- **inside categories**: one ``PartitionedStore`` (a store per category,
  similarity/index/partitions.py).

Timed on both, the same products and queries, alternating: an add (a fresh copy of a catalog
garment, with its category), a removal, a search by vector inside one category (what a
category page or the predicted category asks) and a search across the catalog (the
partitions' top-k merged). Each figure is the median of ``R`` operations; the ratio is
inside/across per operation pair, its median over the ``S`` runs. No Redis, no database.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from bench.common import REPO
from bench.fmnist_vectors import cached_vectors, scaled_vectors
from bench.scale_bench import META, bench_vectors
from similarity.index.partition_store import PartitionedStore
from similarity.index.partitions import PartitionedIndex
from similarity.index.store import MatrixStore
from similarity.index.topk import TopKIndex

K = 10
OPS = ("add", "remove", "search_within", "search_across")


def categories_for(n: int) -> np.ndarray:
    """The class (0-9) of each of ``n`` bench vectors: copy i repeats real embedding i % real,
    the cache's row order is Fashion-MNIST's train split then its test split."""
    from similarity.evaluation.fashion_mnist import load_split

    labels = np.concatenate([load_split("train")[1], load_split("test")[1]])
    real = cached_vectors().shape[0]
    return labels[np.arange(n) % real].astype(np.int64)


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def build(directory: Path, vecs: np.ndarray, cats: list[str]) -> tuple[dict, dict]:
    """Both stores, exactly built, and their build seconds."""
    ids = np.arange(vecs.shape[0])
    across = MatrixStore(directory / "across", meta=META, k=K, layout="topk")
    within = PartitionedStore(directory / "within", meta=META, k=K, layout="topk")
    t0 = time.perf_counter()
    plain = across.rebuild(ids, vecs)
    t1 = time.perf_counter()
    parts = within.rebuild(ids, vecs, cats)
    t2 = time.perf_counter()
    return ({"across": (across, plain), "within": (within, parts)},
            {"across_build_s": t1 - t0, "within_build_s": t2 - t1})


def one_run(stores: dict, vecs: np.ndarray, cats: list[str], repeats: int,
            seed: int) -> dict[str, dict[str, list[float]]]:
    """``repeats`` of each operation on both stores, alternating; seconds per operation."""
    rng = np.random.default_rng(seed)
    n = vecs.shape[0]
    across, plain = stores["across"]
    within, parts = stores["within"]
    assert isinstance(plain, TopKIndex) and isinstance(parts, PartitionedIndex)
    times: dict[str, dict[str, list[float]]] = {op: {"across": [], "within": []} for op in OPS}
    rows = rng.integers(0, n, repeats)
    fresh = scaled_vectors(vecs[rows], repeats, seed=11 + seed)
    victims = rng.choice(plain.ids, repeats, replace=False).tolist()
    for i, (row, victim) in enumerate(zip(rows.tolist(), victims, strict=True)):
        pid, vec, cat = 10**9 + seed * 10**6 + i, fresh[i][None, :], cats[row]
        query = vecs[int(rng.integers(n))] + np.float32(0.01)
        pairs = {
            "add": (partial(across.upsert, plain, [pid], vec),
                    partial(within.upsert, parts, [pid], vec, [cat])),
            "remove": (partial(across.remove, plain, [victim]),
                       partial(within.remove, parts, [victim])),
            "search_within": (partial(plain.query, query, K),
                              partial(parts.query_within, cat, query, K)),
            "search_across": (partial(plain.query, query, K), partial(parts.query, query, K)),
        }
        for op, (on_across, on_within) in pairs.items():
            times[op]["across"].append(_timed(on_across))
            times[op]["within"].append(_timed(on_within))
    return times


def summarise(runs: list[dict[str, dict[str, list[float]]]]) -> dict[str, dict[str, float]]:
    """Per operation: median ms of each index over all runs, and the median over runs of the
    run's median inside/across ratio."""
    out = {}
    for op in OPS:
        across = [t for run in runs for t in run[op]["across"]]
        within = [t for run in runs for t in run[op]["within"]]
        ratios = [statistics.median(w / a for w, a in zip(run[op]["within"], run[op]["across"],
                                                           strict=True)) for run in runs]
        out[op] = {"across_ms": statistics.median(across) * 1e3,
                   "within_ms": statistics.median(within) * 1e3,
                   "ratio": statistics.median(ratios)}
    return out


def figures(n: int, repeats: int, runs: int) -> dict:
    vecs, real = bench_vectors(n)
    cats = [str(c) for c in categories_for(n).tolist()]
    with tempfile.TemporaryDirectory(dir=REPO / "var") as tmp:
        stores, build_s = build(Path(tmp), vecs, cats)
        load_before = os.getloadavg()
        results = [one_run(stores, vecs, cats, repeats, seed) for seed in range(runs)]
    return {"n": n, "real": real, "repeats": repeats, "runs": runs, **build_s,
            "ops": summarise(results), "load_before": load_before, "load_after": os.getloadavg()}


_NAMES = {"add": "add one product, persisted", "remove": "remove one product, persisted",
          "search_within": "search by vector inside one category",
          "search_across": "search by vector across the catalog (partitions merged)"}


def rows(result: dict) -> list[dict]:
    n = result["n"]
    return [{"benchmark": f"lists inside categories: {_NAMES[op]} (N={n:,}, top-k)",
             "figure": f"{s['within_ms']:.2f} ms vs {s['across_ms']:.2f} ms across the catalog",
             "ratio": f"{s['ratio']:.2f}x"} for op, s in result["ops"].items()]


def run(quick: bool = False) -> list[dict]:
    return rows(figures(5_000 if quick else 20_000, 5 if quick else 15, 3 if quick else 5))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.repeats, args.runs = 5_000, 5, 3
    result = figures(args.n, args.repeats, args.runs)
    print(json.dumps(result, indent=1))
    for row in rows(result):
        print(f"| {row['benchmark']} | {row['figure']} | {row['ratio']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
