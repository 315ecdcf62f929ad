"""The whole pipeline through real workers: a temporary SQLite catalog, an embed worker and an
index worker (subprocesses), Redis db 13 under a namespace of the bench's own.

Rows:
- importing the catalog through the workers (products/s), against the engine alone embedding
  the same files in this process (decode, preprocess, embed) in the same run;
- upload → ready (its 10 neighbours written) on an idle system at N = 2,000: median and p95
  over 20 uploads made one at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BROKER = "redis://127.0.0.1:6379/13"
UPLOADS = 20


def _environment(tmp: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}",
        "LOOKALIKE_DATA_DIR": os.environ.get("LOOKALIKE_DATA_DIR", str(ROOT / "var")),
        "MEDIA_ROOT": str(tmp / "media"),
        "LOOKALIKE_MATRIX_DIR": str(tmp / "matrix"),
        "CELERY_BROKER_URL": BROKER,
        "LOOKALIKE_NAMESPACE": f"lookalike-bench-{os.getpid()}",
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update({k: v for k, v in env.items() if k != "PYTHONPATH"})
    return env


@contextlib.contextmanager
def _workers(env: dict[str, str], tmp: Path) -> Iterator[list[subprocess.Popen]]:
    procs = []
    for queue in ("embed", "index"):
        log = (tmp / f"{queue}.log").open("wb")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", queue, "-c", "1",
             "-n", f"bench-{queue}-{os.getpid()}@%h", "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        ))
    try:
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


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


def _forget_namespace(namespace: str) -> None:
    import redis

    client = redis.Redis.from_url(BROKER)
    for key in client.scan_iter(f"{namespace}:*"):
        client.delete(key)


def _engine_alone(sources: list) -> float:
    """Images/s of the engine on the same files, in this process (decode → vector)."""
    from catalog.engine import embedder_get

    data = [s.load() for s in sources]
    embedder = embedder_get()
    embedder.embed_many(data[:64])  # warm-up
    start = time.perf_counter()
    embedder.embed_many(data)
    return len(data) / (time.perf_counter() - start)


def _import(per_class: int) -> tuple[int, float]:
    from django.core.management import call_command

    start = time.perf_counter()
    call_command("import_garments", "--fashion-mnist", "--per-class", str(per_class),
                 "--no-progress", "--timeout", "1800")
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


def run(quick: bool = False) -> list[dict]:
    per_class = 20 if quick else 200
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        env = _environment(tmp)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        from catalog.services.imports import fashion_mnist_sources

        engine_rate = _engine_alone(fashion_mnist_sources(per_class=per_class))
        try:
            with _workers(env, tmp) as (embedder, indexer):
                before = [_cpu_seconds(p.pid) for p in (embedder, indexer)]
                n, seconds = _import(per_class)
                after = [_cpu_seconds(p.pid) for p in (embedder, indexer)]
                latencies = _upload_latencies(fashion_mnist_sources(split="test", per_class=2))
        finally:
            _forget_namespace(env["LOOKALIKE_NAMESPACE"])
    rate = n / seconds
    p95 = statistics.quantiles(latencies, n=20)[-1]
    (eu, es), (iu, is_) = ((a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before, strict=True))
    return [
        {"benchmark": f"import {n:,} Fashion-MNIST garments through the workers "
                      "(1 embed + 1 index worker)",
         "figure": f"{rate:.0f} products/s",
         "ratio": f"{rate / engine_rate:.2f}x of the engine alone on the same files "
                  f"({engine_rate:.0f} images/s)"},
        {"benchmark": f"index stage CPU during that import (user + system), N = {n:,}",
         "figure": f"index {iu + is_:.1f} s ({is_:.1f} s system), embed {eu + es:.1f} s "
                   f"({es:.1f} s system)",
         "ratio": f"index = {(iu + is_) / (eu + es):.2f}x of embed"},
        {"benchmark": f"upload → ready (10 neighbours written), idle, N = {n:,}, "
                      f"{len(latencies)} uploads",
         "figure": f"median {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms",
         "ratio": "n/a"},
    ]


def run_isolated(quick: bool = False) -> list[dict]:
    """``run`` in a process of its own (Django is set up once per process, on its own DB)."""
    args = [sys.executable, str(Path(__file__).resolve()), "--json", *(["--quick"] if quick else [])]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    rows = run(quick="--quick" in sys.argv)
    print(json.dumps(rows) if "--json" in sys.argv else "\n".join(map(str, rows)))
