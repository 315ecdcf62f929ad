"""Reliability tests: their own Redis server and their own Celery worker processes.

The suite's shared worker (tests/worker_fixtures.py) consumes Redis db 9 on port 6379; these
tests start a private ``redis-server`` on a free port (no persistence, so a restart loses every
queued task) and point the test process's Celery app at it while they run, so the shared
worker never sees their tasks and their workers never see the suite's. Each test starts the
workers it needs (``celery -A workers.app worker`` subprocesses, each in its own process
group, with the same settings as the tests: the test database, MEDIA_ROOT, a matrix directory
of its own, the model cache) and may SIGKILL them; all are killed at the end of the test.

Tests must be ``@pytest.mark.django_db(transaction=True)``: the workers see committed rows only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.worker_fixtures import _database_url

REPO = Path(__file__).resolve().parents[2]
LOCK_TTL = 6  # seconds: a killed lock holder frees the index lock this fast
STUCK_AFTER = 3  # seconds: the reconcile sweep re-queues products stuck longer than this


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private ``redis-server`` subprocess without persistence."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis.from_url(self.url(db))

    def start(self) -> None:
        log = (self.workdir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on {self.port} did not start: "
                                   f"{(self.workdir / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing saved (there is no persistence anyway)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()


@pytest.fixture(scope="session")
def reliability_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("reliability-redis"))
    server.start()
    yield server
    server.kill()


def point_app_at(url: str) -> None:
    """Make the test process's Celery app send to ``url``.

    Every pooled broker connection is closed and kombu's pool registry emptied (closing only
    the app's pool would leave a closed pool registered under that URL for the next switch).
    """
    from kombu import pools

    from workers.app import app

    app.conf.CELERY_BROKER_URL = url  # with namespace="CELERY" both keys are consulted
    app.conf.broker_url = url
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


class Worker:
    """A ``celery worker`` subprocess (own process group); ``kill`` SIGKILLs the whole group."""

    def __init__(self, name: str, proc: subprocess.Popen, log_path: Path) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except FileNotFoundError:
            return []
        return [int(x) for x in text.split()]

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def alive(self) -> bool:
        return self.proc.poll() is None


class Harness:
    """What a reliability test drives: workers, failpoints, the broker and the matrix dir."""

    def __init__(self, *, redis_server: RedisServer, tmp: Path, env: dict[str, str]) -> None:
        self.redis = redis_server
        self.tmp = tmp
        self.env = env
        self.matrix_dir = Path(env["LOOKALIKE_MATRIX_DIR"])
        self.failpoints = Path(env["LOOKALIKE_FAILPOINT_DIR"])
        self.workers: list[Worker] = []

    # ---------------------------------------------------------------- workers

    def start_workers(self, *names: str, queues: str = "embed,index",
                      env: dict[str, str] | None = None, concurrency: int = 1) -> list[Worker]:
        """Start one worker per name (``-Q queues -c concurrency``, prefork) and wait until all
        are ready."""
        started = []
        for name in names:
            log_path = self.tmp / f"worker-{name}-{len(self.workers)}.log"
            cmd = [
                sys.executable, "-m", "celery", "-A", "workers.app", "worker",
                "-Q", queues, "-c", str(concurrency), "--pool", "prefork", "-l", "info",
                "-n", f"rel-{name}-{os.getpid()}-{len(self.workers)}@%h",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ]
            proc = subprocess.Popen(
                cmd, cwd=REPO, env={**self.env, **(env or {})},
                stdout=log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
            )
            worker = Worker(name, proc, log_path)
            self.workers.append(worker)
            started.append(worker)
        deadline = time.monotonic() + 90
        for worker in started:
            while " ready." not in worker.log():
                if not worker.alive() or time.monotonic() > deadline:
                    worker.kill()
                    pytest.fail(f"worker {worker.name} did not start:\n{worker.log()[-4000:]}")
                time.sleep(0.1)
        return started

    def start_beat(self, env: dict[str, str] | None = None) -> Worker:
        """``celery beat`` with the database scheduler (the periodic tasks in the test DB)."""
        log_path = self.tmp / f"beat-{len(self.workers)}.log"
        cmd = [sys.executable, "-m", "celery", "-A", "workers.app", "beat", "-l", "info",
               "--max-interval", "1", "--pidfile=", "-s", str(self.tmp / "beat-schedule")]
        proc = subprocess.Popen(
            cmd, cwd=REPO, env={**self.env, **(env or {})},
            stdout=log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        beat = Worker("beat", proc, log_path)
        self.workers.append(beat)
        deadline = time.monotonic() + 60
        while "beat: Starting" not in beat.log():
            if not beat.alive() or time.monotonic() > deadline:
                beat.kill()
                pytest.fail(f"beat did not start:\n{beat.log()[-4000:]}")
            time.sleep(0.1)
        return beat

    def kill_all(self) -> None:
        for worker in self.workers:
            if worker.alive():
                worker.kill()

    def logs(self) -> str:
        return "\n".join(f"===== worker {w.name} (pid {w.pid})\n{w.log()[-5000:]}"
                         for w in self.workers)

    # ---------------------------------------------------------------- failpoints

    def arm(self, name: str, action: str) -> None:
        (self.failpoints / name).write_text(action)

    def release(self, name: str) -> None:
        (self.failpoints / f"{name}.release").touch()

    def paused(self, name: str, *, timeout: float = 60) -> int:
        """Wait until a process pauses at ``name``; its pid."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = sorted(self.failpoints.glob(f"{name}.paused.*"))
            if hits:
                return int(hits[0].read_text())
            time.sleep(0.05)
        raise AssertionError(f"nothing paused at failpoint {name} within {timeout} s\n{self.logs()}")

    def events(self) -> list[tuple[float, int, str]]:
        """(time, pid, failpoint) of every armed failpoint hit, in time order."""
        path = self.failpoints / "events"
        if not path.exists():
            return []
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        return sorted((float(t), int(pid), name) for t, pid, name in rows)

    # ---------------------------------------------------------------- matrix dir

    def temp_files(self) -> list[Path]:
        from similarity.index.store import TEMP_PREFIX, TEMP_SUFFIX

        return sorted(self.matrix_dir.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"))


@pytest.fixture
def harness(transactional_db, reliability_redis, data_dir, model_path, lookalike_storage_dirs,
            settings, tmp_path, monkeypatch, request):
    """A clean private broker (db 0) and lock store (db 1), a matrix dir of the test's own, the
    test process's Celery app pointed at that broker, and a way to start workers; every worker
    is SIGKILLed at the end (before the database is flushed)."""
    from django.db import connection

    from catalog import engine
    from workers.app import app

    if reliability_redis.proc.poll() is not None:  # a test left it dead
        reliability_redis.start()
    reliability_redis.client().flushall()
    matrix_dir = tmp_path / "matrix"
    failpoints = tmp_path / "failpoints"
    matrix_dir.mkdir()
    failpoints.mkdir()
    broker = reliability_redis.url(0)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _database_url(connection.settings_dict),
        "LOOKALIKE_DATA_DIR": str(data_dir),
        "MEDIA_ROOT": str(lookalike_storage_dirs["MEDIA_ROOT"]),
        "LOOKALIKE_MATRIX_DIR": str(matrix_dir),
        "CELERY_BROKER_URL": broker,
        "LOOKALIKE_NAMESPACE": settings.LOOKALIKE_NAMESPACE,
        "LOOKALIKE_LOCK_URL": reliability_redis.url(1),
        "LOOKALIKE_INDEX_LOCK_TTL": str(LOCK_TTL),
        "LOOKALIKE_STUCK_AFTER_SECONDS": str(STUCK_AFTER),
        "LOOKALIKE_FAILPOINT_DIR": str(failpoints),
        "PYTHONPATH": str(REPO),
        "LOG_LEVEL": "INFO",
    }
    env.pop("LOOKALIKE_TEST_DUPLICATE_SENDS", None)
    settings.LOOKALIKE_MATRIX_DIR = matrix_dir
    settings.LOOKALIKE_LOCK_URL = reliability_redis.url(1)
    settings.LOOKALIKE_INDEX_LOCK_TTL = LOCK_TTL
    settings.LOOKALIKE_STUCK_AFTER_SECONDS = STUCK_AFTER
    monkeypatch.delenv("LOOKALIKE_TEST_DUPLICATE_SENDS", raising=False)
    monkeypatch.delenv("LOOKALIKE_FAILPOINT_DIR", raising=False)
    engine.matrix_forget()

    saved = app.conf.broker_url
    point_app_at(broker)
    assert app.connection_for_write().as_uri(include_password=True) == broker
    h = Harness(redis_server=reliability_redis, tmp=tmp_path, env=env)
    request.node.reliability_harness = h
    try:
        yield h
    finally:
        h.kill_all()
        engine.matrix_forget()
        point_app_at(saved)
        if reliability_redis.proc.poll() is not None:
            reliability_redis.start()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    h = getattr(item, "reliability_harness", None)
    if report.when == "call" and report.failed and h is not None:
        report.sections.append(("reliability worker logs (tails)", h.logs()))
