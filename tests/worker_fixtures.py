"""A real Redis broker (db 9, flushed) and a real Celery worker subprocess for the session.

Registered once for the whole suite (``pytest_plugins`` in tests/conftest.py), so every
package shares one broker database and one worker.

The worker gets the same settings as the tests: the test database (a SQLite file, see
``django_db_modify_db_settings`` in tests/conftest.py, or PostgreSQL's ``test_<name>``),
MEDIA_ROOT, the matrix directory and the model cache. Tests using it must be
``@pytest.mark.django_db(transaction=True)`` so the worker sees committed rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

REPO = Path(__file__).resolve().parents[1]
BROKER_DB = int(os.environ.get("LOOKALIKE_TEST_BROKER_DB", "9"))


def _database_url(settings_dict: dict) -> str:
    engine = settings_dict["ENGINE"]
    name = settings_dict["NAME"]
    if engine == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(name).resolve()}"
    if "postgresql" in engine:
        user = quote(settings_dict.get("USER") or "")
        password = quote(settings_dict.get("PASSWORD") or "")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "127.0.0.1"
        port = settings_dict.get("PORT") or 5432
        return f"postgres://{auth}{host}:{port}/{quote(name)}"
    raise RuntimeError(f"no worker DATABASE_URL for engine {engine}")


@pytest.fixture(scope="session")
def broker_url() -> str:
    """Redis db 9 (or $LOOKALIKE_TEST_BROKER_DB) on 127.0.0.1:6379, flushed; the test
    process's Celery app sends there."""
    import redis

    from workers.app import app

    url = os.environ.get("LOOKALIKE_TEST_BROKER_URL", f"redis://127.0.0.1:6379/{BROKER_DB}")
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # pragma: no cover - the environment's fault
        pytest.fail(f"Redis is not answering at {url}: {exc} (.ci/run starts it)")
    client.flushdb()
    # With namespace="CELERY" both keys are consulted: set both.
    app.conf.CELERY_BROKER_URL = url
    app.conf.broker_url = url
    if app._pool is not None:  # something connected to another broker earlier
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None
    assert app.connection_for_write().as_uri(include_password=True) == url
    yield url
    client.flushdb()


@pytest.fixture(scope="session")
def celery_worker_process(
    django_db_setup, django_db_blocker, broker_url, data_dir, model_path,
    lookalike_storage_dirs, tmp_path_factory,
):
    """``celery -A workers.app worker -Q embed,index -c 1 --pool prefork`` as a subprocess."""
    from django.conf import settings
    from django.db import connection

    with django_db_blocker.unblock():
        db_url = _database_url(connection.settings_dict)
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": db_url,
        "LOOKALIKE_DATA_DIR": str(data_dir),
        "MEDIA_ROOT": str(lookalike_storage_dirs["MEDIA_ROOT"]),
        "LOOKALIKE_MATRIX_DIR": str(lookalike_storage_dirs["LOOKALIKE_MATRIX_DIR"]),
        "CELERY_BROKER_URL": broker_url,
        # The test database's name differs from the settings' (test_…): pass the namespace
        # the test process sends to, rather than letting the worker derive its own.
        "LOOKALIKE_NAMESPACE": settings.LOOKALIKE_NAMESPACE,
        "PYTHONPATH": str(REPO),
        "LOG_LEVEL": "INFO",
    }
    cmd = [
        sys.executable, "-m", "celery", "-A", "workers.app", "worker",
        "-Q", "embed,index", "-c", "1", "--pool", "prefork", "-l", "info",
        "-n", f"pipeline-{os.getpid()}@%h", "--without-gossip", "--without-mingle",
    ]
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while b" ready." not in log_path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the worker did not start:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.2)
    proc.log_path = log_path  # type: ignore[attr-defined]
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture
def worker(celery_worker_process):
    """The running worker; its log tail is printed if the test fails."""
    start = celery_worker_process.log_path.stat().st_size
    yield celery_worker_process
    assert celery_worker_process.poll() is None, "the worker died"
    celery_worker_process.test_log = celery_worker_process.log_path.read_bytes()[start:]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    proc = getattr(item, "funcargs", {}).get("worker")
    if report.when == "call" and report.failed and proc is not None:
        tail = proc.log_path.read_text(errors="replace")[-6000:]
        report.sections.append(("worker log (tail)", tail))


@pytest.fixture
def no_broker(monkeypatch):
    """Nothing reaches a worker: queued sends are only recorded."""
    from catalog.services import queue

    sent: list[queue.TaskSend] = []
    monkeypatch.setattr(queue.TaskSend, "__call__", lambda self: sent.append(self))
    return sent
