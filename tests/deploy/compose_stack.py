"""The whole compose stack under its own project name, driven by the docker CLI.

Used by test_stack.py; nothing here talks to the app except through HTTP (shop_client.py).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BASES = {
    "PYTHON_IMAGE": "python:3.11-slim-bookworm",
    "REDIS_IMAGE": "redis:7-bookworm",
    "POSTGRES_IMAGE": "postgres:15-bookworm",
    "DEBIAN_IMAGE": "debian:bookworm-slim",
}
LOCAL_BASES = {
    "PYTHON_IMAGE": "lookalike-base/python:3.11-bookworm",
    "REDIS_IMAGE": "lookalike-base/redis:7-bookworm",
    "POSTGRES_IMAGE": "lookalike-base/postgres:15-bookworm",
    "DEBIAN_IMAGE": "lookalike-base/debian:bookworm",
}
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")


def run(argv: list[str], *, timeout: float = 120, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                            cwd=REPO, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def docker_answers() -> str | None:
    """None if a Docker engine answers; otherwise why not."""
    if shutil.which("docker") is None:
        return "no docker client installed"
    try:
        result = run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    return None if result.returncode == 0 else f"no Docker engine answers ({result.stderr.strip()[:200]})"


def compose_command() -> list[str]:
    """Compose v2 (`docker compose`) where installed, else v1 (`docker-compose`, Debian 12)."""
    if run(["docker", "compose", "version"], check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise AssertionError("neither `docker compose` nor `docker-compose` is installed")


def _have_images(images: list[str]) -> bool:
    return all(run(["docker", "image", "inspect", name], check=False).returncode == 0 for name in images)


def _pull(images: list[str]) -> bool:
    for name in images:
        try:
            if run(["docker", "pull", name], timeout=120, check=False).returncode != 0:
                return False
        except subprocess.TimeoutExpired:
            return False
    return True


def base_images() -> dict[str, str]:
    """The registry's base images if they are here or can be pulled; else ones built from Debian."""
    defaults = list(DEFAULT_BASES.values())
    if _have_images(defaults) or _pull(defaults):
        return dict(DEFAULT_BASES)
    if not _have_images(list(LOCAL_BASES.values())):
        certs = [arg for cert in sorted(HOST_CA_DIR.glob("*.crt")) for arg in ("--ca-cert", str(cert))]
        run(["scripts/build-base-images.sh", *certs], timeout=1800)
    return dict(LOCAL_BASES)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    """One compose project: `compose(...)` runs a command against it."""

    project: str
    port: int
    env: dict[str, str]
    command: list[str] = field(default_factory=compose_command)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def compose(self, *args: str, timeout: float = 900,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([*self.command, "-p", self.project, *args], timeout=timeout, env=self.env, check=check)

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).stdout.split()

    def health(self, container: str) -> str:
        out = run(["docker", "inspect", "--format", "{{json .State}}", container]).stdout
        state = json.loads(out)
        return str(state.get("Health", {}).get("Status") or state.get("Status"))

    def wait_healthy(self, service: str, count: int, timeout: float = 600) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids = self.containers(service)
            if len(ids) == count and all(self.health(c) == "healthy" for c in ids):
                return ids
            time.sleep(3)
        raise AssertionError(f"{service}: {count} healthy container(s) not reached in {timeout:.0f} s")

    def logs(self, container: str) -> str:
        result = run(["docker", "logs", container], check=False)
        return result.stdout + result.stderr

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, volumes and networks still labelled with this project."""
        label = f"label=com.docker.compose.project={self.project}"
        found = {
            "containers": run(["docker", "ps", "-aq", "--filter", label]).stdout.split(),
            "volumes": run(["docker", "volume", "ls", "-q", "--filter", label]).stdout.split(),
            "networks": run(["docker", "network", "ls", "-q", "--filter", label]).stdout.split(),
        }
        return {kind: items for kind, items in found.items() if items}

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "--timeout", "20", timeout=600, check=False)
