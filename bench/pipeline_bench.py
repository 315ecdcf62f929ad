"""The whole pipeline through real workers: a temporary SQLite catalog, an embed worker and an
index worker (subprocesses), Redis db 13 (or ``$LOOKALIKE_BENCH_BROKER_URL``) under a namespace
of the bench's own.

Rows, each scenario in a fresh catalog and process:
- upload → ready (its 10 neighbours written) on an idle system at N = 2,000: median and p95
  over 20 uploads made one at a time;
- importing a shop's folder of 10,000 garment PNGs (``import_garments DIR``) through the
  workers (products/s), against the engine alone on the same files in this process (read,
  decode, preprocess, embed, colour descriptor: the embed worker's work per image) in the same
  run; with one embed worker (2 LiteRT threads), then two (1 thread each);
- the CPU seconds of the embed worker, the index worker and the importer during the import.

The import scenarios run three times, alternating one and two embed workers; rows give the
medians of the per-run figures and ratios, with their ranges.

    python -m bench.pipeline_bench [--quick] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import REPO, django_migrated
from bench.worker_procs import broker_forget, catalog_environment, shop_folder, workers

UPLOADS = 20


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a worker: its main process, its pool children and the
    children it has reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for proc in [pid, *map(int, children)]:
        fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
        user += (int(fields[11]) + int(fields[13])) / tick
        system += (int(fields[12]) + int(fields[14])) / tick
    return user, system


def _engine_alone(paths: list[Path]) -> float:
    """Images/s of the engine on the same files, in this process: read, decode, frame, embed,
    and the colour descriptor, which the product stores beside every vector: what
    the embed worker computes for each image, in the same batches, with the worker's cap on
    BLAS threads (the colour descriptor's matrix product would otherwise spread over threads
    that the prepare pool's other thread needs)."""
    import numpy as np

    from catalog.engine import embedder_get, worker_threads_limit

    worker_threads_limit()
    data = [path.read_bytes() for path in paths]
    embedder = embedder_get()

    def run(chunk: list[bytes]) -> None:
        prepared = embedder.prepare_many(chunk, colour=True)
        embedder.embed_arrays(np.stack([item.array for item in prepared
                                        if item.array is not None]))

    run(data[:64])  # warm-up
    start = time.perf_counter()
    for first in range(0, len(data), embedder.batch_size):
        run(data[first : first + embedder.batch_size])
    return len(data) / (time.perf_counter() - start)


def _import(folder: Path) -> tuple[int, float]:
    from django.core.management import call_command

    start = time.perf_counter()
    call_command("import_garments", str(folder), "--no-progress", "--timeout", "1800")
    from catalog.models import Product

    n = Product.objects.filter(status=Product.Status.READY).count()
    return n, time.perf_counter() - start


def _upload_latencies(uploads: list) -> list[float]:
    from django.core.files.base import ContentFile

    from catalog.models import Product, ProductNeighbour
    from catalog.services.products import product_create

    times = []
    for i, source in enumerate(uploads):
        upload = ContentFile(source.load(), name=source.filename)
        start = time.perf_counter()
        product = product_create(name=f"latency {i}", category=source.category, image=upload)
        while not (Product.objects.filter(pk=product.pk, status=Product.Status.READY).exists()
                   and ProductNeighbour.objects.filter(product=product).count() == 10):
            if time.perf_counter() - start > 120:
                raise RuntimeError(f"upload {i} not ready after 120 s")
            time.sleep(0.002)
        times.append(time.perf_counter() - start)
        time.sleep(0.2)  # idle system between uploads
    return times


def _cpu(procs: list[subprocess.Popen]) -> tuple[float, float]:
    """(user, system) CPU seconds of these workers together."""
    pairs = [_cpu_seconds(p.pid) for p in procs]
    return sum(u for u, _ in pairs), sum(s for _, s in pairs)


def _scenario(per_class: int, embedders: int, latency: bool) -> dict:
    """One fresh catalog: import through the workers, then (optionally) single uploads."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        env = catalog_environment(tmp)
        django_migrated()
        from catalog.services.imports import fashion_mnist_sources

        paths = shop_folder(fashion_mnist_sources(per_class=per_class), tmp / "shop")
        out: dict = {"engine_rate": _engine_alone(paths)}
        try:
            with workers(env, tmp, embedders) as procs:
                embed, index = procs[:-1], procs[-1:]
                before = (_cpu(embed), _cpu(index))
                importer = time.process_time()
                out["n"], out["seconds"] = _import(tmp / "shop")
                out["importer_cpu"] = time.process_time() - importer
                out["embed_cpu"], out["index_cpu"] = (
                    (a[0] - b[0], a[1] - b[1]) for a, b in zip((_cpu(embed), _cpu(index)), before,
                                                              strict=True))
                if latency:
                    sources = fashion_mnist_sources(split="test", per_class=UPLOADS // 10)
                    out["latencies"] = _upload_latencies(sources)
        finally:
            broker_forget(env["LOOKALIKE_NAMESPACE"], tmp / "matrix")
    return out


def _isolated(per_class: int, embedders: int, latency: bool) -> dict:
    """``_scenario`` in a process of its own (Django is set up once per process, on its DB)."""
    args = [sys.executable, "-m", "bench.pipeline_bench", "--json", str(per_class),
            str(embedders), "1" if latency else "0"]
    out = subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _latency_row(r: dict) -> dict:
    times = r["latencies"]
    p95 = statistics.quantiles(times, n=20)[-1]
    return {"benchmark": f"upload → ready (10 neighbours written), idle, N = {r['n']:,}, "
                         f"{len(times)} uploads one at a time",
            "figure": f"median {statistics.median(times) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms",
            "ratio": "n/a"}


def _median_range(values: list[float], fmt: str = "{:.2f}", unit: str = "x") -> str:
    """"median{unit} (min–max over n runs)", or the single value."""
    median = fmt.format(statistics.median(values)) + unit
    if len(values) == 1:
        return median
    return f"{median} ({fmt.format(min(values))}–{fmt.format(max(values))} over {len(values)} runs)"


def _rate(r: dict) -> float:
    return r["n"] / r["seconds"]


def _cpu_total(pair: list[float]) -> float:
    return pair[0] + pair[1]


def _import_rows(ones: list[dict], twos: list[dict]) -> list[dict]:
    """Rows from repeated scenarios (each list in run order; ``ones[i]`` and ``twos[i]`` ran
    one after the other): medians of per-run figures and ratios, with their ranges."""
    n = ones[0]["n"]
    engine1 = [r["engine_rate"] for r in ones]
    rate1 = [_rate(r) for r in ones]
    rate2 = [_rate(r) for r in twos]
    index_share = [_cpu_total(r["index_cpu"]) / _cpu_total(r["embed_cpu"]) for r in ones]
    middle = sorted(ones, key=_rate)[len(ones) // 2]  # the median run's CPU breakdown
    (eu, es), (iu, is_) = middle["embed_cpu"], middle["index_cpu"]
    return [
        {"benchmark": f"import a folder of {n:,} Fashion-MNIST garment PNGs through the "
                      "workers (1 embed worker with 2 LiteRT threads + 1 index worker)",
         "figure": _median_range(rate1, "{:.0f}", " products/s"),
         "ratio": f"{_median_range([a / e for a, e in zip(rate1, engine1, strict=True)])} of "
                  f"the engine alone on the same files, in the same scenario "
                  f"({_median_range(engine1, '{:.0f}', ' images/s')})"},
        {"benchmark": f"the same with 2 embed workers of 1 LiteRT thread each, N = {n:,}",
         "figure": f"{_median_range(rate2, '{:.0f}', ' products/s')}; embed CPU, median "
                   f"{statistics.median(_cpu_total(r['embed_cpu']) for r in twos):.0f} s "
                   f"against {statistics.median(_cpu_total(r['embed_cpu']) for r in ones):.0f} s "
                   "with 1 worker",
         "ratio": f"{_median_range([b / a for a, b in zip(rate1, rate2, strict=True)])} of 1 "
                  f"embed worker (run next to it); "
                  f"{_median_range([_rate(r) / r['engine_rate'] for r in twos])} of the engine "
                  "alone in its own scenario"},
        {"benchmark": f"index stage CPU during the 1-worker import (user + system), N = {n:,}",
         "figure": f"median run: index {iu + is_:.1f} s ({is_:.1f} s system), embed "
                   f"{eu + es:.1f} s ({es:.1f} s system), importer {middle['importer_cpu']:.1f} s, "
                   f"in {middle['seconds']:.0f} s on {os.cpu_count()} cores",
         "ratio": f"index = {_median_range(index_share)} of embed"},
    ]


def run_isolated(quick: bool = False, repeats: int = 3) -> list[dict]:
    """Every scenario, each in a fresh catalog and process: the latency at N = 2,000, then
    the import of 10,000 garments with one and with two embed workers, ``repeats`` times,
    alternating (this machine's speed drifts: alternation exposes both to it alike)."""
    small, large = (20, 50) if quick else (200, 1000)
    latency = _isolated(small, 1, latency=True)
    ones: list[dict] = []
    twos: list[dict] = []
    for _ in range(2 if quick else repeats):
        ones.append(_isolated(large, 1, latency=False))
        twos.append(_isolated(large, 2, latency=False))
    return [_latency_row(latency), *_import_rows(ones, twos)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller catalogs, two repeats")
    parser.add_argument("--repeats", type=int, default=3, help="import scenarios per worker count")
    # One scenario in this process (what run_isolated spawns): per_class embedders latency(0/1).
    parser.add_argument("--json", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.json:
        per_class, embedders, latency = args.json
        print(json.dumps(_scenario(per_class, embedders, bool(latency))))
        return
    for row in run_isolated(quick=args.quick, repeats=args.repeats):
        print(row)


if __name__ == "__main__":
    main()
