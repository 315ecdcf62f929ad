"""The cost of the shop's rules (products not listed, pins, exclusions).

    python -m bench.rules_bench [--n N] [--catalog-n M] [--quick]

Progress goes to stderr; at N = 1,000,000 a run takes about 10 minutes and 6 GB of memory.

**Engine** (top-k layout, pruned, ``--n`` products, default 100,000; the scale bench's vectors:
real Fashion-MNIST embeddings repeated with noise, lists from each row's family): 1 % of the
catalog (at most 1,000) is kept out of lists with a list of its own, 100 products pin one
product and 100 exclude one. Measured, in memory (persistence is the scale bench's business):

- an availability flip, off (the product leaves the index: every list that held it is
  recomputed, and it gets its own list under the rules) and on again (it re-enters every list
  it beats, including the ruled lists): median and p95;
- then, whether the lists are exact: 20 sampled ruled lists against the rules applied to a full
  scan, and 20 sampled lists the flips made again against a full scan;
- the rules' share of an add and of a removal: the index's own work and the ruled lists' work
  (which ruled lists a new product enters, and making those again; making again the ruled
  lists that held a removed product), timed separately on the same operations. Search by photo
  is untouched by the rules: the index holds only products allowed in lists.

**Catalog** (``--catalog-n`` products, default 10,000, a fresh SQLite database, random vectors,
the index worker's task run in this process): from ``products_set_listed`` to every affected
list rewritten in the database (``index_apply`` of the queued task), off and on, median and p95;
and the time of an index task adding one product with and without 200 ruled products. The
index writer's lock needs Redis: ``LOOKALIKE_LOCK_URL`` (default here: db 14).
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

from bench.common import REPO, median_p95_ms
from bench.scale_bench import bench_vectors, lists_index
from similarity.index.rules import ListRules, pair_distances, place_pins, rows_entered, ruled_list
from similarity.index.topk import TopKIndex

K = 10
_SCAN_ROWS = 32_768


def _progress(started: float, what: str) -> None:
    """One line on stderr per stage: a run at 1M products takes tens of minutes."""
    print(f"[{time.perf_counter() - started:7.0f} s] {what}", file=sys.stderr, flush=True)


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class RuledSet:
    """The ruled lists of the bench: products with a vector and rules, and their lists."""

    def __init__(self, index: TopKIndex) -> None:
        self.index = index
        self.vectors: dict[int, np.ndarray] = {}
        self.rules: dict[int, ListRules] = {}
        self.lists: dict[int, list[tuple[int, float]]] = {}

    def put(self, pid: int, vector: np.ndarray, rules: ListRules) -> None:
        self.vectors[pid], self.rules[pid] = vector, rules
        self.remake([pid])

    def drop(self, pid: int) -> None:
        for table in (self.vectors, self.rules, self.lists):
            table.pop(pid, None)

    def remake(self, ids: list[int]) -> None:
        for pid in ids:
            self.lists[pid] = ruled_list(self.index, self.vectors[pid], own_id=pid,
                                         rules=self.rules[pid], limit=K)

    def after_add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        order = sorted(self.vectors)
        thresholds = [self._threshold(pid) for pid in order]
        hit = rows_entered(np.stack([self.vectors[p] for p in order]), thresholds, ids, vectors,
                           self.index.metric, [{p, *self.rules[p].exclude} for p in order])
        self.remake([p for p, h in zip(order, hit.tolist(), strict=True) if h])

    def after_remove(self, removed: set[int]) -> None:
        self.remake([p for p, lst in self.lists.items() if any(n in removed for n, _ in lst)])

    def _threshold(self, pid: int) -> tuple[float, int] | None:
        lst, pins = self.lists[pid], set(self.rules[pid].pins.values())
        if len(lst) < K:
            return None
        chosen = [(d, n) for n, d in lst if n not in pins]
        return max(chosen) if chosen else (float("-inf"), -1)


def _ruled_catalog(index: TopKIndex, vecs: np.ndarray, rng: np.random.Generator) -> RuledSet:
    """1 % (at most 1,000) of fresh products out of lists, 100 pins, 100 exclusions."""
    ruled = RuledSet(index)
    n = vecs.shape[0]
    outside = min(max(n // 100, 10), 1000)
    base = 10**9
    for i in range(outside):
        ruled.put(base + i, vecs[int(rng.integers(n))] + np.float32(0.001), ListRules())
    for pid in rng.choice(n, 200, replace=False).tolist():
        target = int(rng.integers(n))
        if target == pid:
            continue
        rules = (ListRules(pins={int(rng.integers(1, K + 1)): target}) if len(ruled.rules) % 2
                 else ListRules(exclude=frozenset({target})))
        ruled.put(pid, vecs[pid], rules)
    return ruled


def engine_figures(n: int, flips: int, repeats: int, seed: int = 0) -> dict:
    started = time.perf_counter()
    vecs, real = bench_vectors(n)
    _progress(started, f"{n:,} vectors; making their lists and the pruning")
    index, how = lists_index(vecs, real)
    _progress(started, f"index ready ({how['lists']} lists); making the ruled lists")
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    ruled = _ruled_catalog(index, vecs, rng)
    setup_s = time.perf_counter() - t0
    _progress(started, f"{len(ruled.vectors):,} ruled lists; {flips} availability flips")
    off, on = [], []
    flipped = rng.choice(n, flips, replace=False).tolist()
    rewritten: set[int] = set()  # lists the flips made again (exact scans of the index)
    for done, pid in enumerate(flipped, 1):
        vec = np.array(index.vector(pid))

        def flip_off(pid: int = pid, vec: np.ndarray = vec) -> None:
            rewritten.update(index.remove([pid]))
            ruled.after_remove({pid})
            ruled.put(pid, vec, ListRules())

        def flip_on(pid: int = pid, vec: np.ndarray = vec) -> None:
            ruled.drop(pid)
            index.upsert([pid], vec[None, :])
            ruled.after_add(np.array([pid]), vec[None, :])

        off.append(_timed(flip_off))
        on.append(_timed(flip_on))
        _progress(started, f"flip {done}/{flips}: off {off[-1] * 1e3:.0f} ms, on {on[-1] * 1e3:.0f} ms")
    exact = exact_after_flips(index, ruled, vecs, sorted(rewritten | set(flipped)), rng)
    _progress(started, f"exact after the flips: {exact}; the rules' share of adds and removals")
    return {"n": n, "lists": how["lists"], "ruled": len(ruled.vectors), "setup_s": setup_s,
            "flip_off": median_p95_ms(off), "flip_on": median_p95_ms(on), "exact": exact,
            **_rule_shares(index, ruled, vecs, rng, repeats)}


def _brute(vecs: np.ndarray, vector: np.ndarray, skip: set[int]) -> list[tuple[int, float]]:
    """The K nearest rows of ``vecs`` (ids = rows) by (distance, id), by a full scan."""
    best: list[tuple[float, int]] = []
    for s in range(0, vecs.shape[0], _SCAN_ROWS):
        d = pair_distances(vector, vecs[s:s + _SCAN_ROWS], "euclidean")
        near = np.argsort(d, kind="stable")[:K + len(skip)]
        best = sorted(best + [(float(d[i]), s + int(i)) for i in near.tolist()
                              if s + int(i) not in skip])[:K]
    return [(pid, dist) for dist, pid in best]


def exact_after_flips(index: TopKIndex, ruled: RuledSet, vecs: np.ndarray, touched: list[int],
                      rng: np.random.Generator, samples: int = 20) -> dict[str, list[int]]:
    """[exact, checked] for ruled lists (the rules applied to a full scan) and for the index's
    own lists the flips made again (``touched``: the flipped products and the lists that held
    them), against full scans of every vector (all back in lists). Other lists are the bench's
    starting lists, exact at 1M but not at 100k (scale_bench.lists_index)."""
    ruled_ok = 0
    ruled_ids = rng.choice(sorted(ruled.vectors), min(samples, len(ruled.vectors)), replace=False)
    for pid in ruled_ids.tolist():
        rules, vec = ruled.rules[pid], ruled.vectors[pid]
        pinned_ids = [t for r, t in rules.pins.items() if r <= K]
        nearest = _brute(vecs, vec, {pid, *rules.exclude, *pinned_ids})
        pinned = {r: (t, float(pair_distances(vec, vecs[t], "euclidean")[0]))
                  for r, t in rules.pins.items() if r <= K and t != pid}
        ruled_ok += ruled.lists[pid] == place_pins(nearest, pinned, K)
    plain = rng.choice(touched, min(samples, len(touched)), replace=False).tolist()
    plain_ok = sum(index.neighbours(pid) == _brute(vecs, vecs[pid], {pid}) for pid in plain)
    return {"ruled": [int(ruled_ok), len(ruled_ids)], "plain": [int(plain_ok), len(plain)]}


def _rule_shares(index: TopKIndex, ruled: RuledSet, vecs: np.ndarray, rng: np.random.Generator,
                 repeats: int) -> dict:
    """The index's own time and the ruled lists' time on the same adds and removals."""
    n = vecs.shape[0]
    add_index: list[float] = []
    add_rules: list[float] = []
    rm_index: list[float] = []
    rm_rules: list[float] = []
    for i in range(repeats):
        pid, vec = 2 * 10**9 + i, vecs[int(rng.integers(n))][None, :] + np.float32(0.002)
        add_index.append(_timed(partial(index.upsert, [pid], vec)))
        add_rules.append(_timed(partial(ruled.after_add, np.array([pid]), vec)))
        victim = int(rng.choice(index.ids))
        rm_index.append(_timed(partial(index.remove, [victim])))
        rm_rules.append(_timed(partial(ruled.after_remove, {victim})))

    def share(own: list[float], extra: list[float]) -> dict:
        ratios = [(a + b) / a for a, b in zip(own, extra, strict=True)]
        return {"index_ms": statistics.median(own) * 1e3, "rules_ms": statistics.median(extra) * 1e3,
                "ratio": statistics.median(ratios)}

    return {"add": share(add_index, add_rules), "remove": share(rm_index, rm_rules)}


def catalog_figures(n: int, flips: int, seed: int = 1) -> dict:
    """In-process Django on a fresh SQLite catalog (see the module docstring)."""
    from bench.rules_catalog import flip_and_add_times

    with tempfile.TemporaryDirectory(dir=REPO / "var") as tmp:
        return flip_and_add_times(Path(tmp), n, flips, seed)


def _spread(stats: dict[str, float], digits: int) -> str:
    return f"median {stats['median_ms']:.{digits}f} ms, p95 {stats['p95_ms']:.{digits}f} ms"


def rows(engine: dict, catalog: dict | None) -> list[dict]:
    n = engine["n"]
    out = [{"benchmark": f"rules: availability flip {way}, engine (N={n:,})",
            "figure": _spread(engine[f"flip_{way}"], 1), "ratio": "n/a"} for way in ("off", "on")]
    exact = engine["exact"]
    out.append({"benchmark": f"rules: lists equal to a full scan after the flips, engine (N={n:,})",
                "figure": f"ruled {exact['ruled'][0]}/{exact['ruled'][1]}, "
                          f"made again by a flip {exact['plain'][0]}/{exact['plain'][1]}",
                "ratio": "n/a"})
    for op in ("add", "remove"):
        s = engine[op]
        out.append({"benchmark": f"rules: {op} with {engine['ruled']} ruled lists, engine (N={n:,})",
                    "figure": f"index {s['index_ms']:.1f} ms + rules {s['rules_ms']:.1f} ms",
                    "ratio": f"{s['ratio']:.2f}x the rule-free {op}"})
    if catalog:
        cn = catalog["n"]
        out += [{"benchmark": f"rules: flip {way} to every list rewritten, catalog (N={cn:,})",
                 "figure": _spread(catalog[f"flip_{way}"], 0), "ratio": "n/a"} for way in ("off", "on")]
        out.append({"benchmark": f"rules: index task adding one product, catalog (N={cn:,})",
                    "figure": f"{catalog['add_plain_ms']:.0f} ms plain, {catalog['add_ruled_ms']:.0f} ms "
                              f"with {catalog['ruled']} ruled products",
                    "ratio": f"{catalog['add_ruled_ms'] / catalog['add_plain_ms']:.2f}x"})
        out += _collapse_rows(catalog)
    return out


def _collapse_rows(catalog: dict) -> list[dict]:
    """Under the same rules, with 100 copies in the catalog: near-duplicates collapsed or not."""
    cn, off, on = catalog["n"], catalog["collapsed"]["off"], catalog["collapsed"]["on"]
    out = [{"benchmark": f"rules + collapse: flip {way} to every list rewritten, catalog (N={cn:,})",
            "figure": _spread(on[f"flip_{way}"], 0),
            "ratio": f"{on[f'flip_{way}']['median_ms'] / off[f'flip_{way}']['median_ms']:.2f}x "
                     "the median without collapse"} for way in ("off", "on")]
    out.append({"benchmark": f"rules + collapse: index task adding one product, catalog (N={cn:,})",
                "figure": f"{on['add_ms']:.0f} ms with {catalog['ruled']} ruled products",
                "ratio": f"{on['add_ms'] / off['add_ms']:.2f}x without collapse"})
    return out


def run(quick: bool = False) -> list[dict]:
    engine = engine_figures(5_000 if quick else 100_000, 5 if quick else 30, 5 if quick else 15)
    catalog = catalog_figures(1_000 if quick else 10_000, 5 if quick else 20)
    return rows(engine, catalog)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--catalog-n", type=int, default=10_000, help="0: skip the catalog part")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    flips, repeats = (5, 5) if args.quick else (30, 15)
    engine = engine_figures(args.n, flips, repeats)
    catalog = catalog_figures(args.catalog_n, max(5, flips * 2 // 3)) if args.catalog_n else None
    print(json.dumps({"engine": engine, "catalog": catalog, "load": os.getloadavg()}, indent=1))
    for row in rows(engine, catalog):
        print(f"| {row['benchmark']} | {row['figure']} | {row['ratio']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
