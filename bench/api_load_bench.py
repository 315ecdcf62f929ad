"""The REST API under load, against the storefront's product page in the same run.

gunicorn as the image runs it (``config.settings.production``, 3 sync workers, heartbeat files
in /dev/shm), the search and API limits on Redis as in the compose file (``CACHE_URL``: the
bench's Redis database), a throw-away catalog of N = 10,000 products whose lists are real:
random unit vectors, stored as embedded by the current model, then the product's own full
rebuild writes every product's 10 neighbours (so the neighbour table and the ETags are those
of a real catalog; no photo is embedded). SQLite in a file by default, or a PostgreSQL
database the bench creates and drops (``--postgres``).

wrk (Debian's package: ``make bench`` installs it) keeps 20 connections busy, each request
for a product drawn at random from 2,000 spread evenly over the catalog (the same for every
scenario), from one of 1,000 shoppers (a
documentation-range address in ``X-Forwarded-For``, behind one trusted proxy, so the
per-client limit of the API counts as it would for real shoppers and never trips). Scenarios,
interleaved in every round, medians over the rounds:

- the storefront's product page ``/p/<slug>/`` with its 10 similar items (the baseline);
- ``GET /api/v1/products/{sku}/similar``;
- the same with ``If-None-Match`` set to the answer's ETag (fetched beforehand): 304.

For each: requests/s, p50 and p99 latency (wrk's), errors (connect, read, write, timeout, and
any answer whose status is not the expected 200 or 304), gunicorn's CPU per request (master and
workers, from /proc) and wrk's, and the ratios against the storefront measured in the same
round. gunicorn is stopped and the database, files and Redis keys removed at the end,
whatever happens.

    python -m bench.api_load_bench [--quick] [--rounds R] [--seconds S] [--products N]
                                   [--postgres postgres://user@host:5432]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import REPO, model_dir
from bench.http_load import free_port, get, lua_script, wrk
from bench.worker_procs import BROKER, stop_group

CONNECTIONS = 20
SHOPPERS = 1000
SAMPLE = 2000  # products the requests are spread over, evenly across the catalog
WEB_WORKERS = 3  # the Dockerfile's and the compose file's default
SCENARIOS = ("storefront", "api", "api_304")
@dataclass(frozen=True)
class Catalog:
    skus: list[str]
    slugs: list[str]


# --- the catalog (in a process of its own: Django is set up once per process) ---------------


def _seed(n: int, out: Path) -> None:
    """Migrate, collect the static files (production serves them hashed), write ``n`` products
    with random unit vectors stored as the current model's, run the full rebuild (every list
    written), and write the SKUs and slugs to ``out``."""
    from bench.common import django_migrated

    django_migrated()
    from django.core.management import call_command

    from catalog.models import Product
    from catalog.services.rebuild import similarity_rebuild

    call_command("collectstatic", "--noinput", verbosity=0)
    Product.objects.bulk_create(_products(n), batch_size=500)
    run = similarity_rebuild(trigger="bench")
    assert run.state == "done", run.message
    rows = list(Product.objects.order_by("pk").values_list("sku", "slug"))
    out.write_text(json.dumps({"skus": [s for s, _ in rows], "slugs": [s for _, s in rows]}))


def _products(n: int) -> list[Any]:
    import hashlib

    import numpy as np
    from django.utils import timezone

    from catalog.models import Product
    from catalog.vectors import vector_key_current, vector_to_bytes
    from similarity import EMBEDDING_DIM
    from similarity.evaluation.fashion_mnist import CLASS_NAMES

    vectors = np.random.default_rng(0).standard_normal((n, EMBEDDING_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    key, now = vector_key_current(), timezone.now()
    products = []
    for i, vector in enumerate(vectors):
        sha = hashlib.sha256(f"bench photo {i}".encode()).hexdigest()
        category = CLASS_NAMES[i % len(CLASS_NAMES)]
        products.append(Product(
            name=f"{category} {i}", sku=f"SKU-{i:05d}", slug=f"garment-{i:05d}", category=category,
            image=f"products/bench-{i:05d}.png", image_sha256=sha, embedded_image_sha256=sha,
            vector=vector_to_bytes(vector), vector_key=key, status=Product.Status.READY,
            status_changed_at=now))
    return products


def _sample(catalog: Catalog) -> Catalog:
    """Every k-th product, SAMPLE of them: what the scenarios ask for (the 304 scenario needs
    each one's ETag, fetched through the server beforehand)."""
    step = max(1, len(catalog.skus) // SAMPLE)
    return Catalog(skus=catalog.skus[::step], slugs=catalog.slugs[::step])


# --- the environment, the database and gunicorn ----------------------------------------------


def _environment(tmp: Path, database_url: str) -> dict[str, str]:
    """Production settings over plain HTTP on loopback, as the compose file sets them."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": BROKER,
        "CACHE_URL": BROKER,
        "LOOKALIKE_NAMESPACE": f"lookalike-apibench-{os.getpid()}",
        "LOOKALIKE_TRUSTED_PROXIES": "1",
        "LOOKALIKE_DATA_DIR": str(tmp),
        "LOOKALIKE_MODEL_DIR": str(model_dir()),
        "MEDIA_ROOT": str(tmp / "media"),
        "LOOKALIKE_MATRIX_DIR": str(tmp / "matrix"),
        # Random vectors have no categories to fit a projection on, nor colours.
        "LOOKALIKE_SPACE": "raw",
        "LOOKALIKE_COLOUR_WEIGHT": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO),
    }


@contextlib.contextmanager
def _database(tmp: Path, postgres: str | None) -> Iterator[str]:
    """A SQLite file under ``tmp``, or a fresh PostgreSQL database on the ``postgres`` server
    (dropped at the end)."""
    if not postgres:
        yield f"sqlite:///{tmp / 'bench.sqlite3'}"
        return
    import psycopg

    name = f"lookalike_apibench_{os.getpid()}"
    with psycopg.connect(f"{postgres.rstrip('/')}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{postgres.rstrip('/')}/{name}"
    finally:
        with psycopg.connect(f"{postgres.rstrip('/')}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _until_healthy(base: str, proc: subprocess.Popen[Any], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            if get(f"{base}/healthz/")[0] == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn not healthy after 120 s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def _gunicorn(env: dict[str, str], tmp: Path) -> Iterator[tuple[str, subprocess.Popen[Any]]]:
    """The Dockerfile's gunicorn command on a free loopback port; stopped at the end."""
    port, log = free_port(), tmp / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind",
             f"127.0.0.1:{port}", "--workers", str(WEB_WORKERS),
             "--worker-tmp-dir", "/dev/shm"],  # noqa: S108 - as the image runs it
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _until_healthy(base, proc, log)
        yield base, proc
    finally:
        stop_group(proc)


# --- load ------------------------------------------------------------------------------------


def _etags(base: str, skus: list[str]) -> list[str]:
    """Every product's similar-items ETag, fetched once (4 at a time, each as another shopper,
    as wrk will ask); each answer must be a ready list of 10."""
    def fetch(i: int) -> str:
        sku = skus[i]
        status, headers, body = get(f"{base}/api/v1/products/{sku}/similar",
                                     {"X-Forwarded-For": f"2001:db8:1::{i:x}"})
        answer = json.loads(body)
        if status != 200 or answer["state"] != "ready" or len(answer["neighbours"]) != 10:
            raise RuntimeError(f"{sku}: {status} {body[:300]!r}")
        return headers["ETag"]

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(fetch, range(len(skus))))


def _check_answers(base: str, catalog: Catalog, etags: list[str]) -> None:
    """What wrk will ask answers as expected (wrk counts only statuses >= 400 as errors)."""
    status, _, page = get(f"{base}/p/{catalog.slugs[0]}/")
    cards = page.count(b'class="card"')
    if status != 200 or cards != 10:
        raise RuntimeError(f"storefront page: {status}, {cards} similar items")
    status, _, _ = get(f"{base}/api/v1/products/{catalog.skus[0]}/similar",
                        {"If-None-Match": etags[0]})
    if status != 304:
        raise RuntimeError(f"If-None-Match answered {status}, not 304")


def _scripts(tmp: Path, catalog: Catalog, etags: list[str]) -> dict[str, Path]:
    paths = {"storefront": [f"/p/{slug}/" for slug in catalog.slugs],
             "api": [f"/api/v1/products/{sku}/similar" for sku in catalog.skus]}
    scripts = {}
    for scenario in SCENARIOS:
        conditional = scenario == "api_304"
        scripts[scenario] = tmp / f"{scenario}.lua"
        scripts[scenario].write_text(lua_script(
            paths[scenario.removesuffix("_304")], tags=etags if conditional else None,
            expected=304 if conditional else 200, shoppers=SHOPPERS))
    return scripts


def _rounds(base: str, server: subprocess.Popen[Any], scripts: dict[str, Path], rounds: int,
            seconds: float) -> list[dict[str, dict[str, float]]]:
    for scenario in SCENARIOS:  # warm-up: every code path in every gunicorn worker
        wrk(base, scripts[scenario], seconds=min(seconds, 5), connections=CONNECTIONS,
            server=server)
    measured = []
    for _ in range(rounds):
        measured.append({s: wrk(base, scripts[s], seconds=seconds, connections=CONNECTIONS,
                                   server=server) for s in SCENARIOS})
        measured[-1]["machine"] = {"load": os.getloadavg()[0]}  # this machine may be shared
    return measured


def measure(n: int, rounds: int, seconds: float, postgres: str | None = None) -> dict[str, Any]:
    """Seed the catalog, start gunicorn, run the scenarios; stop and remove everything."""
    tmp = Path(tempfile.mkdtemp(prefix="lookalike-apibench-"))
    env: dict[str, str] = {}
    try:
        with _database(tmp, postgres) as database_url:
            env = _environment(tmp, database_url)
            subprocess.run([sys.executable, "-m", "bench.api_load_bench", "--seed", str(n),
                            str(tmp / "catalog.json")], cwd=REPO, env=env, check=True)
            catalog = _sample(Catalog(**json.loads((tmp / "catalog.json").read_text())))
            with _gunicorn(env, tmp) as (base, server):
                etags = _etags(base, catalog.skus)
                _check_answers(base, catalog, etags)
                measured = _rounds(base, server, _scripts(tmp, catalog, etags), rounds, seconds)
        return {"n": n, "database": "PostgreSQL" if postgres else "SQLite", "rounds": measured}
    finally:
        if env:
            _forget(env)
        shutil.rmtree(tmp, ignore_errors=True)


def _forget(env: dict[str, str]) -> None:
    """The bench's Redis keys (in a process that sets Django up on the bench's settings)."""
    subprocess.run([sys.executable, "-m", "bench.api_load_bench", "--forget"], cwd=REPO, env=env,
                   check=True)


def _forget_here() -> None:
    """Its namespace, the rebuild's lock and fencing counter, the API limits' counters."""
    import django

    django.setup()
    from bench.worker_procs import broker_forget

    broker_forget(os.environ["LOOKALIKE_NAMESPACE"], Path(os.environ["LOOKALIKE_MATRIX_DIR"]),
                  "*lookalike:throttle:*")


# --- rows ------------------------------------------------------------------------------------


def _median(rounds: list[dict[str, dict[str, float]]], scenario: str, key: str) -> float:
    return statistics.median(r[scenario][key] for r in rounds)


def _ratio(rounds: list[dict[str, dict[str, float]]], scenario: str, key: str) -> float:
    return statistics.median(r[scenario][key] / r["storefront"][key] for r in rounds)


def _figure(rounds: list[dict[str, dict[str, float]]], scenario: str) -> str:
    rps = [r[scenario]["rps"] for r in rounds]
    errors = sum(int(r[scenario]["errors"]) for r in rounds)
    requests = sum(int(r[scenario]["requests"]) for r in rounds)
    return (f"{statistics.median(rps):.0f} req/s ({min(rps):.0f}–{max(rps):.0f}), "
            f"p50 {_median(rounds, scenario, 'p50'):.0f} ms, "
            f"p99 {_median(rounds, scenario, 'p99'):.0f} ms, errors {errors} of {requests:,}; "
            f"server CPU {_median(rounds, scenario, 'cpu_ms'):.1f} ms/request "
            f"(wrk {_median(rounds, scenario, 'wrk_cpu_ms'):.2f})")


LABELS = {
    "storefront": "storefront product page GET /p/<slug>/ with its 10 similar items (baseline)",
    "api": "GET /api/v1/products/{sku}/similar",
    "api_304": "GET /api/v1/products/{sku}/similar with If-None-Match (304)",
}


def rows_from(result: dict[str, Any]) -> list[dict[str, str]]:
    rounds = result["rounds"]
    setting = (f"N = {result['n']:,}, gunicorn {WEB_WORKERS} sync workers, production "
               f"settings, {result['database']}, {CONNECTIONS} connections (wrk), "
               f"{len(rounds)} rounds")
    rows = []
    for scenario in SCENARIOS:
        load = statistics.median(r["machine"]["load"] for r in rounds)
        ratio = f"1.00x (load average {load:.1f} on {os.cpu_count()} cores)" if (
            scenario == "storefront") else (
            f"{_ratio(rounds, scenario, 'rps'):.2f}x storefront req/s; p99 "
            f"{_ratio(rounds, scenario, 'p99'):.2f}x; server CPU/request "
            f"{_ratio(rounds, scenario, 'cpu_ms'):.2f}x")
        rows.append({"benchmark": f"{LABELS[scenario]}, {setting}",
                     "figure": _figure(rounds, scenario), "ratio": ratio})
    return rows


def run(quick: bool = False, rounds: int = 3, seconds: float = 10, n: int = 10_000,
        postgres: str | None = None) -> list[dict[str, str]]:
    if quick:
        n, rounds, seconds = min(n, 500), 2, 2
    return rows_from(measure(n, rounds, seconds, postgres))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 products, 2 rounds of 2 s")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every scenario")
    parser.add_argument("--seconds", type=float, default=10, help="seconds of each wrk run")
    parser.add_argument("--products", type=int, default=10_000, help="catalog size N")
    parser.add_argument("--postgres", help="a PostgreSQL server URL (postgres://user@host:port) "
                                           "to create the bench's database on, instead of SQLite")
    parser.add_argument("--json", action="store_true", help="print the raw figures too")
    # The seeding step, in a process of its own: N and the output file.
    parser.add_argument("--seed", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--forget", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    # SIGTERM ends the bench through its finally blocks: gunicorn stopped, files removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.seed:
        _seed(int(args.seed[0]), Path(args.seed[1]))
        return
    if args.forget:
        _forget_here()
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: scripts/install-system-deps.sh bench (Debian's wrk)")
    n, rounds, seconds = (min(args.products, 500), 2, 2.0) if args.quick else (
        args.products, args.rounds, args.seconds)
    result = measure(n, rounds, seconds, args.postgres)
    if args.json:
        print(json.dumps(result))
    for row in rows_from(result):
        print(row)


if __name__ == "__main__":
    main()
