"""What the benchmarks that run the product's own processes share: a throw-away catalog's
environment on the bench's Redis database, Celery workers started as subprocesses (always
stopped), the bench's Redis keys forgotten afterwards, and a shop's folder of garment photos.

The bench's broker is Redis db 13, or ``$LOOKALIKE_BENCH_BROKER_URL`` (test runs flush their
own databases; run two benches at once on two databases)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import REPO, sqlite_catalog_environment

BROKER = os.environ.get("LOOKALIKE_BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")


def catalog_environment(tmp: Path) -> dict[str, str]:
    """The environment of a fresh SQLite catalog under ``tmp`` on the bench's broker, under a
    namespace of its own, with ``DEBUG`` off as in production; also set in this process."""
    env = {
        **os.environ,
        **sqlite_catalog_environment(tmp),
        "LOOKALIKE_MATRIX_DIR": str(tmp / "matrix"),
        "CELERY_BROKER_URL": BROKER,
        "LOOKALIKE_NAMESPACE": f"lookalike-bench-{os.getpid()}",
        "PYTHONPATH": str(REPO),
        "LOG_LEVEL": "WARNING",
        # Workers as in production: with DEBUG on, Django keeps every query's SQL with its
        # parameters quoted (measured: a few % of the index worker's CPU).
        "DJANGO_DEBUG": "0",
    }
    os.environ.update({k: v for k, v in env.items() if k != "PYTHONPATH"})
    return env


def stop_group(proc: subprocess.Popen[Any], timeout: float = 30) -> None:
    """SIGTERM to the process group ``proc`` leads, then SIGKILL if it has not ended."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def workers(env: dict[str, str], tmp: Path, embedders: int) -> Iterator[list[subprocess.Popen[Any]]]:
    """``embedders`` embed workers (LiteRT threads = cores / embedders) and one index worker,
    stopped when the block ends, whatever happens in it."""
    threads = str(max(1, (os.cpu_count() or 1) // embedders))
    procs: list[subprocess.Popen[Any]] = []
    try:
        for name, queue in [*((f"embed{i}", "embed") for i in range(embedders)), ("index", "index")]:
            with (tmp / f"{name}.log").open("wb") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", queue,
                     "-c", "1", "-n", f"bench-{name}-{os.getpid()}@%h", "--without-gossip",
                     "--without-mingle"],
                    cwd=REPO, env={**env, "LOOKALIKE_EMBED_THREADS": threads}, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                ))
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            stop_group(proc)


def broker_forget(namespace: str, matrix_dir: Path, *patterns: str) -> None:
    """Delete the bench's broker keys, its index writer's lock and fencing counter, and any
    other keys matching ``patterns``."""
    import redis

    from catalog.services.locking import lock_name_for

    client = redis.Redis.from_url(BROKER)
    for pattern in (f"{namespace}:*", f"lookalike:lock:{lock_name_for(matrix_dir)}*", *patterns):
        for key in client.scan_iter(pattern):
            client.delete(key)


def shop_folder(sources: list[Any], root: Path) -> list[Path]:
    """The garments as a shop's folder of PNG files, one subfolder per category (written
    before anything is timed: a shop imports files it already has)."""
    paths = []
    for i, source in enumerate(sources):
        folder = root / source.category.replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:06d}.png"
        path.write_bytes(source.load())
        paths.append(path)
    return paths
