"""Distance-matrix benchmark: what one upload costs, what a rebuild costs, and the old loop.

    python -m bench.matrix_bench [--quick]

Prints a markdown table; ``run(quick)`` returns the rows as dicts for a top-level runner.
Every figure is a median of several runs, and every ratio compares figures measured in the
same run on the same data:

- incremental add: ``MatrixStore.upsert`` of one new 1280-d product (validation, one new
  row/column, top-k maintenance, a ~5 KB delta written, fsynced and published, directory
  fsynced) vs a naive full rewrite of the N x N float32 matrix with ``np.savez`` to a temp
  file + fsync (what the original notebook did on every change; it even used float64 and
  ``savez_compressed``, which is slower still). Loading (what a worker does once) is
  reported on its own row, and the first add after the load in the notes.
- full rebuild at N=10,000: ``DistanceMatrix.build`` alone and ``MatrixStore.rebuild``
  (build + base file written and fsynced), each in a fresh subprocess whose peak RSS
  (``ru_maxrss``) is reported, next to the RSS of that process before the build started.
- all-pairs distances at N=1,050: the vectorised build (with every top-k list) vs the
  notebook's double Python loop over all pairs with ``scipy.spatial.distance.euclidean``
  into a float64 matrix (run once: it takes seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.common import REPO, memory_status_kb

if TYPE_CHECKING:
    from similarity.index.store import MatrixMeta

DIM = 1280


def _meta() -> MatrixMeta:
    from similarity.index.store import MatrixMeta

    return MatrixMeta(weights_sha256="0" * 64, policy="bench", metric="euclidean")


def _vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    # Post-ReLU average-pooled MobileNetV2 features are non-negative: uniform [0, 1) is close.
    return rng.random((n, DIM), dtype=np.float32)


def _row(benchmark: str, n: int, ours: float, baseline_name: str = "", baseline: float | None = None,
         runs: str = "", notes: str = "", **extra: Any) -> dict:
    ratio = (baseline / ours) if (baseline is not None and ours) else None
    figure = _fmt_s(ours)
    if "peak_rss_mb" in extra:
        figure += f", peak RSS {extra['peak_rss_mb']:.0f} MB"
    row = {
        "benchmark": f"{benchmark} (N={n:,})",
        "figure": figure,
        "ratio": (f"{_fmt_ratio(ratio)} faster than {baseline_name} ({_fmt_s(baseline)})"
                  if ratio is not None else "n/a"),
        "name": benchmark,
        "n": n,
        "ours_s": ours,
        "baseline": baseline_name,
        "baseline_s": baseline,
        "speedup": ratio,
        "runs": runs,
        "notes": notes,
    }
    row.update(extra)
    return row


def _naive_rewrites(directory: str, distances: np.ndarray, repeat: int) -> list[float]:
    """Seconds of each full ``np.savez`` rewrite of the matrix + fsync (the notebook's way)."""
    naive = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        with tempfile.NamedTemporaryFile(dir=directory, suffix=".npz") as f:
            np.savez(f, distances=distances)
            f.flush()
            os.fsync(f.fileno())
        naive.append(time.perf_counter() - t0)
    return naive


def bench_incremental(n: int, repeat: int, naive_repeat: int, load_repeat: int,
                      seed: int = 0) -> list[dict]:
    from similarity.index.dense import DistanceMatrix
    from similarity.index.store import MatrixStore

    rng = np.random.default_rng(seed)
    tmp = tempfile.mkdtemp(prefix="matrix-bench-")
    try:
        st = MatrixStore(tmp, meta=_meta(), dim=DIM, max_items=max(20_000, n + 1_000))
        st.rebuild(np.arange(n), _vectors(rng, n))  # result dropped: workers load from disk
        loads = []
        for _ in range(load_repeat):  # as a worker starting up would
            t0 = time.perf_counter()
            m = st.load()
            loads.append(time.perf_counter() - t0)
        assert isinstance(m, DistanceMatrix)  # the dense layout (the store's default)
        t0 = time.perf_counter()
        st.upsert(m, [n], _vectors(rng, 1))
        first = time.perf_counter() - t0
        adds, changed = [], []
        for i in range(repeat):
            v = _vectors(rng, 1)
            t0 = time.perf_counter()
            changed.append(len(st.upsert(m, [n + 1 + i], v)))
            adds.append(time.perf_counter() - t0)
        delta_bytes = max(p.stat().st_size for p in Path(tmp).glob("delta-*.npz"))
        naive = _naive_rewrites(tmp, m.distances, naive_repeat)
        full_bytes = 4 * len(m) ** 2
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [
        _row(
            "incremental add, persisted", n, statistics.median(adds),
            "full np.savez rewrite + fsync", statistics.median(naive),
            runs=f"{repeat} / {naive_repeat}",
            notes=(
                f"delta {delta_bytes / 1024:.1f} KB vs matrix {full_bytes / 2**20:.0f} MB; "
                f"median {statistics.median(changed):.0f} lists changed per add; "
                f"first add after load {_fmt_s(first)}"
            ),
        ),
        _row(
            "load from disk (base + deltas)", n, statistics.median(loads), runs=str(load_repeat),
            notes="distances streamed into a matrix with 5 % spare rows (no second copy)",
        ),
    ]


def _peak_rss_kb() -> int:
    """This process's peak RSS in KB (VmHWM; ``ru_maxrss`` where /proc cannot tell)."""
    try:
        return memory_status_kb()["VmHWM"]
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _child(mode: str, n: int, directory: str) -> None:
    """Run in a fresh process: one build or rebuild, print timings and peak RSS as JSON."""
    from similarity.index.dense import DistanceMatrix
    from similarity.index.store import MatrixStore

    rng = np.random.default_rng(1)
    ids, vecs = np.arange(n), _vectors(rng, n)
    floor = _peak_rss_kb()
    t0 = time.perf_counter()
    if mode == "build":
        DistanceMatrix.build(ids, vecs, dim=DIM, max_items=max(20_000, n))
    else:
        MatrixStore(directory, meta=_meta(), dim=DIM, max_items=max(20_000, n)).rebuild(ids, vecs)
    seconds = time.perf_counter() - t0
    peak = _peak_rss_kb()
    print(json.dumps({"seconds": seconds, "rss_kb": peak, "rss_floor_kb": floor}))


def bench_rebuild(n: int, repeat: int) -> list[dict]:
    rows = []
    for mode, label in (("build", "full build (distances + top-k), in memory"),
                        ("rebuild", "full rebuild, persisted (build + base write + fsync)")):
        results = []
        for _ in range(repeat):
            tmp = tempfile.mkdtemp(prefix="matrix-bench-")
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "bench.matrix_bench", "--child", mode, str(n), tmp],
                    capture_output=True, text=True, check=True, cwd=REPO,
                )
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        rss = statistics.median(r["rss_kb"] for r in results) / 1024
        floor = statistics.median(r["rss_floor_kb"] for r in results) / 1024
        rows.append(_row(
            label, n, statistics.median(r["seconds"] for r in results), runs=str(repeat),
            notes=(f"peak RSS {rss:.0f} MB (process before the build: {floor:.0f} MB; "
                   f"N x N float32 alone: {4 * n * n / 2**20:.0f} MB)"),
            peak_rss_mb=rss, rss_floor_mb=floor,
        ))
    return rows


def bench_allpairs(n: int, repeat: int, loop_repeat: int) -> list[dict]:
    from scipy.spatial.distance import euclidean

    from similarity.index.dense import DistanceMatrix

    rng = np.random.default_rng(2)
    vecs = _vectors(rng, n)
    ours, m = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        m = DistanceMatrix.build(np.arange(n), vecs, dim=DIM)
        ours.append(time.perf_counter() - t0)
    loops = []
    for _ in range(loop_repeat):
        t0 = time.perf_counter()
        d = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                d[i, j] = euclidean(vecs[i], vecs[j])
        loops.append(time.perf_counter() - t0)
    assert m is not None  # repeat >= 1
    err = float(np.abs(m.distances - d).max())
    return [_row(
        "all-pairs distances", n, statistics.median(ours), "notebook loop, scipy euclidean",
        statistics.median(loops), runs=f"{repeat} / {loop_repeat}",
        notes=f"ours includes every top-k list; max abs difference {err:.1e}",
    )]


def run(quick: bool) -> list[dict]:
    """All benchmark rows (quick: smaller N and fewer runs, for a smoke run)."""
    rows: list[dict] = []
    if quick:
        for n in (1_000, 2_000):
            rows += bench_incremental(n, repeat=7, naive_repeat=3, load_repeat=1)
        rows += bench_rebuild(2_000, repeat=1)
        rows += bench_allpairs(300, repeat=3, loop_repeat=1)
    else:
        rows += bench_incremental(1_000, repeat=21, naive_repeat=5, load_repeat=5)
        rows += bench_incremental(10_000, repeat=21, naive_repeat=3, load_repeat=3)
        rows += bench_rebuild(10_000, repeat=3)
        rows += bench_allpairs(1_050, repeat=5, loop_repeat=1)
    return rows


def _fmt_s(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


def _fmt_ratio(x: float) -> str:
    return f"{x:.1f}x" if x < 10 else f"{x:.0f}x"


def to_markdown(rows: list[dict]) -> str:
    lines = [
        "| benchmark | N | ours (median) | baseline | baseline (median) | ratio | runs | notes |",
        "|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = _fmt_ratio(r["speedup"]) if r["speedup"] is not None else ""
        lines.append(
            f"| {r['name']} | {r['n']:,} | {_fmt_s(r['ours_s'])} | {r['baseline']} | "
            f"{_fmt_s(r['baseline_s'])} | {ratio} | {r['runs']} | {r['notes']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N, few runs")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "N", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, n, directory = args.child
        _child(mode, int(n), directory)
        return 0
    print(to_markdown(run(args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
