"""The top-k layout at scale: persisted add/remove, search, first search after a
change, distributed rebuild (1 vs 2 processes), faiss vs numpy blocks, peak RSS.

Vectors: the real embeddings of Fashion-MNIST (``bench.fmnist_vectors``: as many of the
70,000 as are cached), repeated with small Gaussian perturbations up to N
(``scaled_vectors``: sigma = 0.02 x the coordinates' standard deviation).

    python -m bench.scale_bench [N] [--speedup-n M] [--quick]
    python -m bench.scale_bench rebuild N [P]   # only the full rebuild of N, P block processes
    python -m bench.scale_bench prune [N ...] [sigma=S]   # pruned scans at each N (default
                                    # 100k, 200k, 1M), unpruned too up to 100k; S: the noise

``run(quick)`` returns rows in ``bench.run``'s format; ``run_prune`` a dict per N (also saved
as JSON under var/bench).

Lists of the pruned runs are not built exactly (an exact all-pairs build takes hours at 1M
on this machine, and too long at 100k-200k while it is shared): when every real embedding
has more than k copies (1M), ``family_lists``: each row's list among the copies of its own
real embedding, which is the exact list when copies are nearer each other than any other
vector; else ``ivf_lists``: the top-k found by a faiss IVF search, re-scored canonically.
A random sample of rows is checked against an exact search and the count reported. A list
that is not exact holds true distances of other rows, so its k-th distance can only be
larger than the true one: an add checks more rows, not fewer (the add figure is biased
slow); search does not read lists.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, median_seconds, memory_status_kb
from bench.fmnist_vectors import cached_vectors, scaled_vectors
from similarity.index.block_knn import Block, discard_input, input_size, knn_block
from similarity.index.exact import canonical
from similarity.index.store import MatrixMeta, MatrixStore
from similarity.index.topk import TopKIndex

K = 10
BENCH_DIR = REPO / "var" / "bench"
IVF_PROBES = 4
_PAIR_ROWS = 8192
BLOCK_ROWS = 2048
_ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
META = MatrixMeta(weights_sha256="0" * 64, policy="bench", metric="euclidean")


def bench_vectors(n: int) -> tuple[np.ndarray, int]:
    """(n vectors, how many real embeddings they repeat)."""
    base = cached_vectors()
    if base.shape[0] == 0:
        raise SystemExit("no cached embeddings: run python -m bench.fmnist_vectors first")
    return scaled_vectors(base, n), base.shape[0]


def _median_of(fn: Callable[[], Any], repeats: int) -> float:
    return median_seconds(fn, repeats=repeats, warmup=0)


def _row(benchmark: str, n: int, figure: str, ratio: str = "n/a", **extra: Any) -> dict:
    return {"benchmark": f"{benchmark} (N={n:,})", "figure": figure, "ratio": ratio, "n": n,
            **extra}


# ---------------------------------------------------------------- rebuild


def _worker_main(argv: list[str]) -> None:
    """``worker <input> <out dir> <engine> <start:stop> ...``: compute and save blocks."""
    inp, out, engine, *ranges = argv
    for spec in ranges:
        start, stop = (int(x) for x in spec.split(":"))
        ids, nbr, dist = knn_block(Path(inp), start, stop, k=K, metric="euclidean",
                                   engine=engine)
        tmp = Path(out) / f".{start}.npz"
        np.savez(tmp, ids=ids, nbr_ids=nbr, nbr_dist=dist)
        tmp.rename(Path(out) / f"block-{start:09d}.npz")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"peak_rss_mb": _peak_mb(), "cpu_s": usage.ru_utime + usage.ru_stime}))


def _peak_mb() -> float:
    return float(_rss_fields()["VmHWM"])


def _spawn(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, **_ONE_THREAD, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "bench.scale_bench", *args], env=env,
                            stdout=subprocess.PIPE, text=True)


def distributed_blocks(inp: Path, processes: int, engine: str,
                       rows: int | None = None) -> tuple[list[Block], float, dict]:
    """Compute every block of ``inp`` (or its first ``rows`` rows) in ``processes`` worker
    processes (one BLAS thread each). Returns (blocks, wall seconds, {worst worker peak RSS
    MB, the workers' total CPU seconds}): on a shared machine the CPU time shows the work
    that the wall time hides."""
    n = rows or input_size(inp)
    specs = [f"{s}:{min(n, s + BLOCK_ROWS)}" for s in range(0, n, BLOCK_ROWS)]
    with tempfile.TemporaryDirectory(dir=inp) as out:
        t0 = time.perf_counter()
        procs = [_spawn(["worker", str(inp), out, engine, *specs[i::processes]])
                 for i in range(processes)]
        reports = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        seconds = time.perf_counter() - t0
        if any(p.returncode for p in procs):
            raise RuntimeError("a block worker failed")
        blocks = []
        for path in sorted(Path(out).glob("block-*.npz")):
            with np.load(path, allow_pickle=False) as z:
                blocks.append((z["ids"], z["nbr_ids"], z["nbr_dist"]))
    usage = {"worker_rss_mb": max(r["peak_rss_mb"] for r in reports),
             "cpu_s": sum(r["cpu_s"] for r in reports)}
    return blocks, seconds, usage


def bench_rebuild(store: MatrixStore, vecs: np.ndarray, engine: str,
                  processes: int = 2) -> tuple[TopKIndex, dict]:
    """Full distributed rebuild of ``vecs`` published into ``store``."""
    t0 = time.perf_counter()
    inp = store.rebuild_input(np.arange(vecs.shape[0]), vecs)
    blocks, compute_s, usage = distributed_blocks(inp, processes, engine)
    index = store.publish_rebuild(inp, blocks)
    discard_input(inp)
    total = time.perf_counter() - t0
    return index, {"total_s": total, "blocks_s": compute_s, **usage}


def bench_speedup(store: MatrixStore, vecs: np.ndarray, engine: str, rows: int) -> dict:
    """Seconds for the first ``rows`` rows' blocks against all of ``vecs``, 1 vs 2
    processes (same input, same run)."""
    inp = store.rebuild_input(np.arange(vecs.shape[0]), vecs)
    _, one, one_use = distributed_blocks(inp, 1, engine, rows)
    _, two, two_use = distributed_blocks(inp, 2, engine, rows)
    discard_input(inp)
    return {"one_s": one, "two_s": two, "speedup": one / two, "one_cpu_s": one_use["cpu_s"],
            "two_cpu_s": two_use["cpu_s"]}


def bench_engines(inp: Path, rows: int) -> dict:
    """faiss vs numpy BLAS blocks on the same rows, one thread each, same run."""
    out = {}
    for engine in ("numpy", "faiss"):
        _, seconds, usage = distributed_blocks(inp, 1, engine, rows)
        out[engine], out[f"{engine}_cpu_s"] = seconds, usage["cpu_s"]
    discard_input(inp)
    return out


# ---------------------------------------------------------------- operations


def bench_ops(store: MatrixStore, index: TopKIndex, vecs: np.ndarray, repeats: int,
              prune: bool = True, seed: int = 0) -> dict:
    """Persisted add and remove, search ranking, first search after a change (reader);
    ``prune=False``: the same with the writer's and the reader's scans unpruned. Runs on
    one store take different ``seed``s (else the second adds and removes nothing new)."""
    rng = np.random.default_rng(5 + seed)
    n = vecs.shape[0]
    fresh = scaled_vectors(vecs[rng.integers(0, n, 4 * repeats)], 4 * repeats, seed=9 + seed)
    reader_store = MatrixStore(store.directory, meta=META, k=K, layout="topk")
    reader = reader_store.load()
    assert isinstance(reader, TopKIndex)
    if not prune:
        index.disable_pruning()
        reader.disable_pruning()
    load_before = os.getloadavg()
    next_id = iter(range(10**9 + 10**6 * seed, 10**9 + 10**6 * seed + 4 * repeats))
    add = _median_of(lambda: store.upsert(index, [next(next_id)], fresh[rng.integers(0, fresh.shape[0])]),
                  repeats)
    victims = iter(rng.choice(index.ids, repeats, replace=False).tolist())
    remove = _median_of(lambda: store.remove(index, [next(victims)]), repeats)
    query = vecs[rng.integers(0, n, repeats)] + np.float32(0.01)
    qi = iter(range(repeats))
    search = _median_of(lambda: index.query(query[next(qi)], K), repeats)

    def first_search() -> None:
        reader_store.refresh(reader)
        reader.query(query[0], K)

    firsts = []
    for _ in range(min(5, repeats)):
        store.upsert(index, [next(next_id)], fresh[rng.integers(0, fresh.shape[0])])
        firsts.append(_median_of(first_search, 1))
    return {"add_s": add, "remove_s": remove, "search_s": search,
            "first_search_s": statistics.median(firsts), "repeats": repeats,
            "pruned": index.basis is not None, "load_before": load_before,
            "load_after": os.getloadavg()}


# ---------------------------------------------------------------- memory


def _rss_fields() -> dict:
    """Peak and current RSS, private and file-backed, in MB."""
    status = memory_status_kb()
    return {key: status[key] / 1024 for key in ("VmHWM", "VmRSS", "RssAnon", "RssFile") if key in status}


def _role_main(argv: list[str]) -> None:
    """``writer|reader <store dir> <vectors .npy>``: idle RSS, then peak after typical work."""
    role, directory, vec_path = argv
    vecs = np.load(vec_path, mmap_mode="r", allow_pickle=False)
    idle = _rss_fields()
    store = MatrixStore(directory, meta=META, k=K, layout="topk")
    index = store.load()
    if role == "writer":
        for i in range(3):
            store.upsert(index, [2 * 10**9 + i], np.array(vecs[i]) + np.float32(0.01))
        store.remove(index, [int(index.ids[5])])
    else:
        for i in range(3):
            index.query(np.array(vecs[i]), K)
        store.refresh(index)
        index.query(np.array(vecs[4]), K)
    print(json.dumps({"idle": idle, "after": _rss_fields()}))


def bench_rss(directory: Path, vecs_path: Path, role: str) -> dict:
    proc = _spawn([role, str(directory), str(vecs_path)])
    out = proc.communicate()[0]
    return dict(json.loads(out.strip().splitlines()[-1]))


# ---------------------------------------------------------------- the run


def run(quick: bool = False, n: int = 100_000, speedup_rows: int = 8192) -> list[dict]:
    n = 5_000 if quick else n
    vecs, real = bench_vectors(n)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(dir=REPO / "var") as tmp:
        store = MatrixStore(Path(tmp) / "store", meta=META, k=K, layout="topk")
        engines = bench_engines(store.rebuild_input(np.arange(n), vecs),
                                min(n, 2 * BLOCK_ROWS))
        engine = min(("numpy", "faiss"), key=lambda e: engines[f"{e}_cpu_s"])
        store.engine = engine
        index, rebuild = bench_rebuild(store, vecs, engine)
        speed = bench_speedup(store, vecs, engine, min(n, speedup_rows))
        ops = bench_ops(store, index, vecs, 5 if quick else 15)
        vec_path = Path(tmp) / "queries.npy"
        np.save(vec_path, vecs[:16])
        writer = bench_rss(store.directory, vec_path, "writer")
        reader = bench_rss(store.directory, vec_path, "reader")
    note = f"{real:,} real Fashion-MNIST embeddings repeated with noise to N"
    rows += [
        _row("top-k: add one product, persisted, median", n, f"{ops['add_s'] * 1e3:.1f} ms",
             notes=note),
        _row("top-k: remove one product, persisted, median", n,
             f"{ops['remove_s'] * 1e3:.1f} ms"),
        _row("top-k: search by vector (ranking only), median", n,
             f"{ops['search_s'] * 1e3:.1f} ms"),
        _row("top-k: first search after a catalog change (refresh + search)", n,
             f"{ops['first_search_s'] * 1e3:.1f} ms"),
        _row(f"top-k: full rebuild, 2 block processes ({engine})", n,
             f"{rebuild['total_s']:.1f} s, workers' CPU {rebuild['cpu_s']:.0f} s",
             f"worker peak RSS {rebuild['worker_rss_mb']:.0f} MB"),
        _row(f"top-k: rebuild blocks, first {min(n, speedup_rows):,} rows, 1 vs 2 processes",
             n, f"{speed['one_s']:.1f} s vs {speed['two_s']:.1f} s (CPU {speed['one_cpu_s']:.0f}"
             f" s vs {speed['two_cpu_s']:.0f} s)", f"{speed['speedup']:.2f}x speed-up"),
        _row(f"top-k: k-NN blocks, first {min(n, 2 * BLOCK_ROWS):,} rows, one thread", n,
             f"faiss {engines['faiss']:.1f} s, numpy {engines['numpy']:.1f} s (CPU "
             f"{engines['faiss_cpu_s']:.0f} s vs {engines['numpy_cpu_s']:.0f} s)",
             f"numpy/faiss CPU {engines['numpy_cpu_s'] / engines['faiss_cpu_s']:.2f}"),
        _row("top-k: peak RSS above idle, writer / web reader", n,
             f"{writer['after']['VmHWM'] - writer['idle']['VmRSS']:.0f} MB / "
             f"{reader['after']['VmHWM'] - reader['idle']['VmRSS']:.0f} MB",
             f"reader private (RssAnon) {reader['after']['RssAnon']:.0f} MB, "
             f"file-backed {reader['after']['RssFile']:.0f} MB"),
    ]
    for r in rows:
        r["raw"] = {"ops": ops, "rebuild": rebuild, "speedup": speed, "engines": engines,
                    "writer": writer, "reader": reader, "real_vectors": real}
    return rows


# ---------------------------------------------------------------- pruned scans at scale


def family_lists(vecs: np.ndarray, real: int, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """(nbr_ids, nbr_dist) of ``scaled_vectors(base[:real], n)`` (row c * real + i is copy c
    of real vector i; ids = rows) from each row's family alone: canonical distances to the
    other copies, ordered by (distance, id). See the module docstring for when it is exact."""
    n = vecs.shape[0]
    copies = -(-n // real)
    dist = np.full((n, copies), np.inf, np.float32)
    for c1 in range(copies):
        for c2 in range(c1 + 1, copies):
            for s in range(0, min(real, n - c2 * real), _PAIR_ROWS):
                a = np.arange(c1 * real + s, c1 * real + min(real, n - c2 * real, s + _PAIR_ROWS))
                b = a + (c2 - c1) * real
                d = canonical(vecs[a].astype(np.float64), vecs[b].astype(np.float64),
                              "euclidean")
                dist[a, c2], dist[b, c1] = d, d
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]  # equal distances: smaller copy
    nbr_dist = np.take_along_axis(dist, order, axis=1)
    nbr_ids = order * real + (np.arange(n) % real)[:, None]
    return np.where(np.isinf(nbr_dist), -1, nbr_ids), nbr_dist


def _by_distance(rows: np.ndarray, cand: np.ndarray, vecs: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, canonical distances) of each row's k nearest among its candidate rows
    (-1 = none), ordered by (distance, id)."""
    dist = np.full(cand.shape, np.inf, np.float32)
    for s in range(0, rows.size, _PAIR_ROWS):
        part = slice(s, s + _PAIR_ROWS)
        r, c = np.nonzero(cand[part] >= 0)
        a, b = vecs[rows[part][r]], vecs[cand[part][r, c]]
        dist[part][r, c] = canonical(a.astype(np.float64), b.astype(np.float64), "euclidean")
    ids = np.where(cand < 0, np.iinfo(np.int64).max, cand)
    order = _order(ids, dist)[:, :k]
    nbr_d = np.take_along_axis(dist, order, axis=1)
    return np.where(np.isinf(nbr_d), -1, np.take_along_axis(cand, order, axis=1)), nbr_d


def _order(ids: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Per row, the column order by (distance, id)."""
    by_id = np.argsort(ids, axis=1, kind="stable")
    by_d = np.argsort(np.take_along_axis(dist, by_id, axis=1), axis=1, kind="stable")
    return np.take_along_axis(by_id, by_d, axis=1)


def ivf_lists(vecs: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """(nbr_ids, nbr_dist) from a faiss IVF search (sqrt(n) lists, ``IVF_PROBES`` probed;
    ids = rows), re-scored canonically: approximate lists of true distances."""
    import faiss

    n, d = vecs.shape
    nlist = int(np.sqrt(n))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
    rng = np.random.default_rng(1)
    ivf.train(vecs[np.sort(rng.choice(n, min(n, 50 * nlist), replace=False))])
    ivf.add(vecs)
    ivf.nprobe = IVF_PROBES
    _, found = ivf.search(vecs, k + 1)
    found = np.where(found == np.arange(n)[:, None], -1, found)
    return _by_distance(np.arange(n), found, vecs, k)


def sample_exact(index: TopKIndex, rows: int, seed: int = 3) -> int:
    """How many of ``rows`` random products' stored lists equal an exact search."""
    ids = np.random.default_rng(seed).choice(index.ids, rows, replace=False)
    return sum(index.neighbours(int(i)) == index.query(index.vector(int(i)), K, exclude=[int(i)])
               for i in ids.tolist())


def lists_index(vecs: np.ndarray, real: int) -> tuple[TopKIndex, dict]:
    """The benchmark's index of ``vecs`` (pruned) and how its lists were made."""
    n = vecs.shape[0]
    ids = np.arange(n)
    t0 = time.perf_counter()
    family = n > K * real
    nbr_ids, nbr_dist = family_lists(vecs, real) if family else ivf_lists(vecs)
    lists_s = time.perf_counter() - t0
    index = TopKIndex.from_arrays(ids, vecs, nbr_ids, nbr_dist, k=K)
    t0 = time.perf_counter()
    index.enable_pruning()
    return index, {"lists": "family" if family else f"faiss IVF, {IVF_PROBES} probes",
                   "lists_s": lists_s, "fit_s": time.perf_counter() - t0,
                   "load": os.getloadavg()}


def prune_figures(base: np.ndarray, n: int, unpruned: bool, repeats: int = 15,
                  sigma: float = 0.02) -> dict:
    """Every figure of the pruned layout at ``n`` (and unpruned, for the ratio)."""
    vecs = scaled_vectors(base, n, sigma=sigma)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BENCH_DIR) as tmp:
        store = MatrixStore(Path(tmp) / "store", meta=META, k=K, layout="topk")
        built, out = lists_index(vecs, base.shape[0])
        out["sample_exact"] = (sample_exact(built, 100), 100)
        store.publish_generation(built)
        del built
        index = store.load()
        assert isinstance(index, TopKIndex)
        out["pruned"] = bench_ops(store, index, vecs, repeats)
        if unpruned:
            reference = store.load()
            assert isinstance(reference, TopKIndex)
            out["unpruned"] = bench_ops(store, reference, vecs, repeats, prune=False, seed=1)
        vec_path = Path(tmp) / "queries.npy"
        np.save(vec_path, vecs[:16])
        del vecs, index
        for role in ("writer", "reader"):
            out[role] = {**bench_rss(store.directory, vec_path, role), "load": os.getloadavg()}
        out["disk"] = subprocess.run(["df", "-h", "/work"], capture_output=True,
                                     text=True).stdout.splitlines()[-1]
    return {"n": n, "real_vectors": base.shape[0], "sigma": sigma, **out}


def run_prune(sizes: list[int], sigma: float = 0.02) -> list[dict]:
    """``prune_figures`` at each size (unpruned too up to 100k); saved as JSON."""
    base = cached_vectors()
    results = []
    for n in sizes:
        results.append(prune_figures(base, n, unpruned=n <= 100_000, sigma=sigma))
        path = BENCH_DIR / f"prune-{time.strftime('%Y%m%dT%H%M%S')}-{n}.json"
        path.write_text(json.dumps(results[-1], indent=1, default=float))
        print(json.dumps(results[-1], default=float), flush=True)
    return results


def run_blocks(n: int, rows: int) -> dict:
    """Only the block figures (engines, 1 vs 2 processes) on the first ``rows`` rows."""
    vecs, real = bench_vectors(n)
    with tempfile.TemporaryDirectory(dir=REPO / "var") as tmp:
        store = MatrixStore(Path(tmp) / "store", meta=META, k=K, layout="topk")
        engines = bench_engines(store.rebuild_input(np.arange(n), vecs), rows)
        engine = min(("numpy", "faiss"), key=lambda e: engines[f"{e}_cpu_s"])
        return {"n": n, "real_vectors": real, "engines": engines,
                "speedup": bench_speedup(store, vecs, engine, rows), "engine": engine}


def run_rebuild(n: int, processes: int) -> dict:
    """Only the full distributed rebuild of ``n`` vectors in ``processes`` block processes
    (the engine the blocks use: faiss, the faster of the two in every run so far)."""
    vecs, real = bench_vectors(n)
    with tempfile.TemporaryDirectory(dir=REPO / "var") as tmp:
        store = MatrixStore(Path(tmp) / "store", meta=META, k=K, layout="topk", engine="faiss")
        _, rebuild = bench_rebuild(store, vecs, "faiss", processes)
    return {"n": n, "processes": processes, "real_vectors": real, "load": os.getloadavg(),
            **rebuild}


def main(argv: list[str]) -> None:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
    elif argv and argv[0] == "prune":
        sigma = [float(a.split("=")[1]) for a in argv[1:] if a.startswith("sigma=")]
        run_prune([int(a) for a in argv[1:] if a.isdigit()] or [100_000, 200_000, 1_000_000],
                  *sigma[:1])
    elif argv and argv[0] == "rebuild":
        print(json.dumps(run_rebuild(int(argv[1]), int(argv[2]) if len(argv) > 2 else 2)))
    elif argv and argv[0] == "blocks":
        print(json.dumps(run_blocks(int(argv[1]), int(argv[2])), indent=1))
    elif argv and argv[0] == "worker":
        _worker_main(argv[1:])
    elif argv and argv[0] in ("writer", "reader"):
        _role_main(argv)
    else:
        quick = "--quick" in argv
        nums = [int(a) for a in argv if a.isdigit()]
        rows = run(quick, *nums[:2])
        for r in rows:
            print(f"| {r['benchmark']} | {r['figure']} | {r['ratio']} |")
        print(json.dumps(rows[0]["raw"], indent=1, default=float))


if __name__ == "__main__":
    main(sys.argv[1:])
