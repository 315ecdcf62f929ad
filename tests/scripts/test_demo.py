"""scripts/demo.py, the real thing: a subprocess with a 10-garment catalog, real workers,
beat and web server on Redis db 12 (or $LOOKALIKE_TEST_DEMO_BROKER_DB), its own data dir.

Every process the demo starts inherits a marker in its environment, so the tests can find
them all in /proc (and kill them after a failed test), orphans included. The 30 s below
are the issue's deadline for a complete cleanup, not a measure of speed.

Run alone with ``pytest -m demo``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.worker_fixtures import BROKER_DB as SUITE_BROKER_DB

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "scripts" / "demo.py"
BROKER_DB = int(os.environ.get("LOOKALIKE_TEST_DEMO_BROKER_DB", "12"))
MARKER = "LOOKALIKE_DEMO_TEST_RUN"
CLEANUP_DEADLINE = 30.0  # within 30 s no process the demo started is alive
START_DEADLINE = 300.0  # a hang guard for a loaded machine, not a measure
# Settings of the test run that must not reach the demo (CI's DATABASE_URL above all).
NOT_FOR_THE_DEMO = ("DATABASE_URL", "MEDIA_ROOT", "LOOKALIKE_MATRIX_DIR", "DJANGO_SETTINGS_MODULE")

pytestmark = pytest.mark.demo


# --- /proc: the oracle, independent of the demo's own bookkeeping -----------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str
    start: int  # clock ticks after boot: with the pid, names one process even if the pid is reused


def proc(pid: int) -> Proc | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return Proc(pid, int(fields[1]), fields[0], int(fields[19]))


def processes() -> list[Proc]:
    found = (proc(int(entry.name)) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [p for p in found if p is not None]


def alive(p: Proc) -> bool:
    now = proc(p.pid)
    return now is not None and now.start == p.start and now.state != "Z"


def tree(root: int) -> list[Proc]:
    """``root`` and its descendants, as they are now."""
    everyone = processes()
    found = [p for p in everyone if p.pid == root]
    for parent in found:  # grows while it is walked
        found += [p for p in everyone if p.ppid == parent.pid]
    return found


def marked(run: str) -> list[Proc]:
    """Live processes whose environment carries this run's marker."""
    needle = f"{MARKER}={run}".encode()
    found = []
    for p in processes():
        try:
            environ = Path(f"/proc/{p.pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in environ and alive(p):
            found.append(p)
    return found


def kill_all(run: str) -> None:
    for p in marked(run):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)


# --- Demos -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Demo:
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    output: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def answers(self) -> bool:
        """Its storefront answers 200 over HTTP."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://127.0.0.1:{self.port}/", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_for(self, what: str, ready: Callable[[], bool]) -> None:
        """Until ``ready()``; fails if the demo exits first."""
        deadline = time.monotonic() + START_DEADLINE
        while not ready():
            assert self.proc.poll() is None, f"the demo exited ({self.proc.returncode}):\n{self.text()}"
            assert time.monotonic() < deadline, f"no {what} after {START_DEADLINE} s:\n{self.text()}"
            time.sleep(0.5)


class Demos:
    """Starts demos on one data dir; a serving one is shared until a test stops it."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.env = env
        self.current: Demo | None = None
        self.runs = 0

    def start(self, *args: str, data_dir: Path | None = None, port: int | None = None) -> Demo:
        self.runs += 1
        data_dir = data_dir or self.data_dir
        port = port or free_port()
        output = self.root / f"demo-{self.runs}.out"
        with output.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, str(DEMO), "--per-class", "1", "--port", str(port), *args],
                cwd=REPO, env={**self.env, "LOOKALIKE_DATA_DIR": str(data_dir)},
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        return Demo(popen, port, data_dir, output)

    def serving(self) -> Demo:
        if self.current is None or self.current.proc.poll() is not None:
            self.current = self.start()
        self.current.wait_for("HTTP answer", self.current.answers)
        return self.current


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Iterator[Demos]:
    import redis

    from similarity.model.cache import ensure_model

    assert BROKER_DB != SUITE_BROKER_DB, "the demo's workers would take the suite's tasks"
    broker = f"redis://127.0.0.1:6379/{BROKER_DB}"
    client = redis.Redis.from_url(broker)
    client.flushdb()  # ConnectionError if Redis is down (`make test` and .ci/run start it)
    models = data_dir / "models"
    ensure_model(models)  # converted once, shared: the demo must not convert it again
    run = uuid.uuid4().hex
    env = {name: value for name, value in os.environ.items() if name not in NOT_FOR_THE_DEMO}
    env.update(CELERY_BROKER_URL=broker, LOOKALIKE_MODEL_DIR=str(models), PYTHONPATH=str(REPO),
               **{MARKER: run})
    yield Demos(tmp_path_factory.mktemp("demo"), env)
    kill_all(run)  # after a failed test; a passing one leaves nothing
    client.flushdb()


def stop_and_check(demo: Demo, signum: signal.Signals, run: str) -> None:
    """Send ``signum`` to the demo alone; within 30 s nothing it started lives, no temp file."""
    started = tree(demo.proc.pid)
    os.kill(demo.proc.pid, signum)
    assert_all_gone(demo, started, run, signum.name)
    assert demo.proc.returncode == 0, demo.text()
    assert f"{signum.name}: stopping the demo" in demo.text()


def assert_all_gone(demo: Demo, started: list[Proc], run: str, why: str) -> None:
    """Within 30 s: the processes in ``started``, and any other of this run, are gone."""
    assert {"worker", "beat"} <= {word for p in started for word in cmdline(p.pid)}, started
    deadline = time.monotonic() + CLEANUP_DEADLINE
    while left := [p for p in started if alive(p)] + marked(run):  # marked: orphans too
        assert time.monotonic() < deadline, (
            f"{why}: still alive after {CLEANUP_DEADLINE} s: "
            f"{[' '.join(cmdline(p.pid)) for p in left]}\n{demo.text()}"
        )
        time.sleep(0.5)
    demo.proc.wait(timeout=1)  # it is gone: reap it
    assert not list((demo.data_dir / "matrix").glob(".w-*.tmp"))


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def run_id(demos: Demos) -> str:
    return demos.env[MARKER]


# --- Tests -----------------------------------------------------------------------------------


def test_a_second_demo_names_the_running_one_and_exits(demos: Demos) -> None:
    running = demos.serving()
    for other in (demos.start(port=free_port()),  # same data dir, another port
                  demos.start(data_dir=demos.root / "elsewhere", port=running.port)):  # same port
        assert other.proc.wait(timeout=60) == 1, other.text()
        message = other.text()
        assert f"Another demo is running: pid {running.proc.pid}, serving " \
               f"http://127.0.0.1:{running.port}/, data dir {running.data_dir}" in message, message
        assert "Migrating" not in message  # it started nothing
    assert running.answers() and running.proc.poll() is None


def test_sigterm_stops_everything(demos: Demos) -> None:
    stop_and_check(demos.serving(), signal.SIGTERM, run_id(demos))


def test_sighup_stops_everything(demos: Demos) -> None:
    stop_and_check(demos.serving(), signal.SIGHUP, run_id(demos))


def test_sigint_during_a_step_stops_everything(demos: Demos) -> None:
    demo = demos.start()
    demo.wait_for("workers", lambda: "workers and beat started" in demo.text())
    stop_and_check(demo, signal.SIGINT, run_id(demos))


def test_a_dying_worker_stops_the_rest_and_is_named(demos: Demos) -> None:
    demo = demos.serving()
    started = tree(demo.proc.pid)
    index = next(p for p in started if p.ppid == demo.proc.pid and "index@%h" in cmdline(p.pid))
    os.kill(index.pid, signal.SIGKILL)
    assert_all_gone(demo, started, run_id(demos), "index worker killed")
    assert demo.proc.returncode == 1, demo.text()
    log = demo.data_dir / "logs" / "worker-index.log"
    assert f"index worker (pid {index.pid}) was killed by SIGKILL; the end of {log}:" in demo.text()
    assert log.read_text().splitlines()[-1] in demo.text().rsplit("the end of", 1)[1]  # its tail
