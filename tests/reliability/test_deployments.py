"""Deployments sharing one Redis never take each other's tasks, and a task naming
products a deployment does not hold is reported, never a silent success.

Deployment A is the test database with the harness's namespace; deployment B is a second
SQLite database with its own data directories and the namespace it derives by itself. Both
import 100 garments at the same time through their own workers on the same Redis database.
No beat runs, so no sweep could hide a stolen task: a product whose task went to the other
deployment would stay pending.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import current_app

from catalog import task_names
from tests.reliability.support import problems, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[2]
_CHECK = (
    "import json, django; django.setup(); "
    "from django.conf import settings; "
    "from tests.reliability.support import problems; "
    "print(json.dumps({'namespace': settings.LOOKALIKE_NAMESPACE, 'problems': problems(100)}))"
)


def _manage(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, timeout=timeout,
                          capture_output=True, text=True, check=False)


def _deployment_b(harness, tmp_path: Path) -> dict[str, str]:
    """B's environment: its own SQLite database, media and matrix; namespace left to derive."""
    root = tmp_path / "b"
    for sub in ("media", "matrix"):
        (root / sub).mkdir(parents=True)
    env = {**harness.env, "DATABASE_URL": f"sqlite:///{root / 'db.sqlite3'}",
           "MEDIA_ROOT": str(root / "media"), "LOOKALIKE_MATRIX_DIR": str(root / "matrix")}
    env["LOOKALIKE_NAMESPACE"] = ""  # empty: derive it (start_workers merges the harness env)
    migrated = _manage(env, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    return env


def _import(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "import_garments", "--fashion-mnist", "--per-class", "10",
         "--no-wait", "--no-progress"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _problems_of(env: dict[str, str]) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHECK], cwd=REPO, env=env, timeout=120,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_two_deployments_on_one_redis_keep_their_own_tasks(harness, settings, tmp_path):
    env_b = _deployment_b(harness, tmp_path)
    (worker_a,) = harness.start_workers("a")
    (worker_b,) = harness.start_workers("b", env=env_b)
    imports = [_import(harness.env), _import(env_b)]
    for proc in imports:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]

    wait_for(lambda: not problems(100) or "; ".join(problems(100)), timeout=300, interval=1,
             what="deployment A: 100 products ready with brute-force lists")

    def b_settled() -> bool | str:
        found = _problems_of(env_b)["problems"]
        return not found or "; ".join(found)

    wait_for(b_settled, timeout=300, interval=2, what="deployment B settled")
    namespace_b = _problems_of(env_b)["namespace"]
    assert namespace_b != settings.LOOKALIKE_NAMESPACE  # derived from B's own database
    for worker in (worker_a, worker_b):
        assert "not in this deployment's database" not in worker.log(), worker.name
        assert "embed_products" in worker.log()
    # Every key either deployment left in the shared Redis carries its namespace.
    keys = [k.decode() for k in harness.redis.client(0).keys("*")]
    assert keys, "the workers left no key at all (bindings, at least, are expected)"
    prefixes = (f"{settings.LOOKALIKE_NAMESPACE}:", f"{namespace_b}:")
    assert [k for k in keys if not k.startswith(prefixes)] == []


def test_a_task_for_unknown_products_is_reported_with_the_database(harness, settings):
    (worker,) = harness.start_workers("alone")
    current_app.send_task(task_names.EMBED, kwargs={"product_ids": [987654, 987655]})

    def reported() -> bool | str:
        log = worker.log()
        return ("succeeded" in log) or "waiting for the task to finish"

    wait_for(reported, timeout=60, interval=0.2, what="the embed task to finish")
    time.sleep(0.2)  # the warning is logged before the success line; nothing else to wait for
    log = worker.log()
    assert "embed task: 2 product(s) not in this deployment's database" in log
    assert "[987654, 987655]" in log
    assert f"namespace {settings.LOOKALIKE_NAMESPACE}" in log
    assert "'unknown': 2" in log  # the count in the task's result
