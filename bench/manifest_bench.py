"""A shop's manifest (``import_catalog manifest.csv --images DIR``) against a folder import
(``import_garments DIR``) of the same photos, through the same real workers, in the same run.

Each scenario runs in a fresh SQLite catalog and process, on the bench's Redis database
(``$LOOKALIKE_BENCH_BROKER_URL``, default db 13) under a namespace of its own: the photos
are 10,000 Fashion-MNIST garments (1,000 a class) written as 224 px PNG files in one folder
per category, before anything is timed (the same bytes in every scenario); the manifest names
each of them with a SKU, a name and its category. Two embed workers of one LiteRT thread and
one index worker run during the import, as the product recommends on 2 cores. Timed from the
command's start: until it returns with every product queued (``--no-wait``), and until every
product is ready (its list written) or failed. The two imports alternate in every round (the
first of a round goes second in the next); rows give medians of the per-round figures and of
the per-round ratios, with their ranges. Workers are stopped and the catalog, files and Redis
keys removed at the end of each scenario, whatever happens.

    python -m bench.manifest_bench [--quick] [--rounds R] [--per-class K]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, django_migrated
from bench.worker_procs import broker_forget, catalog_environment, shop_folder, workers

KINDS = ("manifest", "folder")
EMBED_WORKERS = 2
TIMEOUT = 3600


def _manifest(paths: list[Path], shop: Path) -> Path:
    """The shop's export naming every photo: SKU, name, category (its folder), photo path."""
    manifest = shop.parent / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["sku", "name", "category", "photo"])
        for i, path in enumerate(paths):
            category = path.parent.name
            out.writerow([f"SKU-{i:06d}", f"{category} {i}", category,
                          path.relative_to(shop).as_posix()])
    return manifest


def _command(kind: str, paths: list[Path], shop: Path) -> list[str]:
    if kind == "manifest":
        return ["import_catalog", str(_manifest(paths, shop)), "--images", str(shop)]
    return ["import_garments", str(shop)]


def _until_settled(started: float) -> float:
    """Seconds from ``started`` until no product is pending or processing."""
    from catalog.models import Product

    busy = (Product.Status.PENDING, Product.Status.PROCESSING)
    while Product.objects.filter(status__in=busy).exists():
        if time.perf_counter() - started > TIMEOUT:
            raise RuntimeError(f"products still pending after {TIMEOUT} s")
        time.sleep(0.25)
    return time.perf_counter() - started


def _scenario(kind: str, per_class: int) -> dict[str, Any]:
    """One import in a fresh catalog: seconds to queued and to settled, and the outcome."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        env = catalog_environment(tmp)
        django_migrated()
        from django.core.management import call_command

        from catalog.models import Product
        from catalog.services.imports import fashion_mnist_sources

        shop = tmp / "shop"
        paths = shop_folder(fashion_mnist_sources(per_class=per_class), shop)
        args = _command(kind, paths, shop)
        try:
            with workers(env, tmp, EMBED_WORKERS):
                started = time.perf_counter()
                call_command(*args, "--no-wait", "--no-progress", stdout=_Discard())
                queued = time.perf_counter() - started
                settled = _until_settled(started)
        finally:
            broker_forget(env["LOOKALIKE_NAMESPACE"], tmp / "matrix")
        ready = Product.objects.filter(status=Product.Status.READY).count()
        return {"kind": kind, "n": len(paths), "queued_s": queued, "ready_s": settled,
                "ready": ready, "products": Product.objects.count(),
                "load": os.getloadavg()[0]}  # this machine may be shared


class _Discard:
    """A stdout for the commands: their summaries are not the bench's output."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _isolated(kind: str, per_class: int) -> dict[str, Any]:
    """``_scenario`` in a process of its own (Django is set up once per process, on its DB)."""
    args = [sys.executable, "-m", "bench.manifest_bench", "--json", kind, str(per_class)]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        stdout, _ = proc.communicate()
    finally:  # interrupted: the scenario stops its workers in its own finally
        if proc.poll() is None:
            proc.terminate()
            proc.wait(120)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} scenario failed ({proc.returncode})")
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    if result["ready"] != result["n"] or result["products"] != result["n"]:
        raise RuntimeError(f"{kind}: {result['ready']} of {result['n']} ready")
    return result


def measure(per_class: int, rounds: int) -> list[dict[str, dict[str, Any]]]:
    """``rounds`` rounds of both imports, alternating which goes first."""
    measured = []
    for i in range(rounds):
        order = KINDS if i % 2 == 0 else KINDS[::-1]
        measured.append({kind: _isolated(kind, per_class) for kind in order})
    return measured


def _spread(values: list[float], fmt: str, unit: str) -> str:
    """"median{unit} (min–max over n rounds)", or the single value."""
    median = fmt.format(statistics.median(values)) + unit
    if len(values) == 1:
        return median
    return f"{median} ({fmt.format(min(values))}–{fmt.format(max(values))} over {len(values)} rounds)"


def _rates(rounds: list[dict[str, dict[str, Any]]], kind: str, key: str) -> list[float]:
    return [r[kind]["n"] / r[kind][key] for r in rounds]


def rows_from(rounds: list[dict[str, dict[str, Any]]]) -> list[dict[str, str]]:
    n = rounds[0]["manifest"]["n"]
    setting = (f"{n:,} garment PNGs, {EMBED_WORKERS} embed workers of 1 LiteRT thread + 1 index "
               "worker")
    rows = []
    for key, what in (("queued_s", "rows/s until every product is queued"),
                      ("ready_s", "products/s end to end, until every list is written")):
        manifest, folder = _rates(rounds, "manifest", key), _rates(rounds, "folder", key)
        ratios = [m / f for m, f in zip(manifest, folder, strict=True)]
        unit = " rows/s" if key == "queued_s" else " products/s"
        load = statistics.median(r[kind]["load"] for r in rounds for kind in KINDS)
        rows += [
            {"benchmark": f"import_garments DIR (baseline), {what}, {setting}",
             "figure": _spread(folder, "{:.0f}", unit),
             "ratio": f"1.00x (load average {load:.1f} on {os.cpu_count()} cores)"},
            {"benchmark": f"import_catalog manifest.csv --images DIR, {what}, the same photos",
             "figure": _spread(manifest, "{:.0f}", unit),
             "ratio": f"{_spread(ratios, '{:.2f}', 'x')} of import_garments"},
        ]
    return rows


def run(quick: bool = False, rounds: int = 3, per_class: int = 1000) -> list[dict[str, str]]:
    if quick:
        per_class, rounds = 20, 2
    return rows_from(measure(per_class, rounds))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 photos, 2 rounds")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both imports")
    parser.add_argument("--per-class", type=int, default=1000, help="photos per class (10 classes)")
    # One scenario in this process (what measure spawns): kind, per_class.
    parser.add_argument("--json", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # SIGTERM ends the bench through its finally blocks: workers stopped, files removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.json:
        print(json.dumps(_scenario(args.json[0], int(args.json[1]))))
        return
    for row in run(quick=args.quick, rounds=args.rounds, per_class=args.per_class):
        print(row)


if __name__ == "__main__":
    main()
