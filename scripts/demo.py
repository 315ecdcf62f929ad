"""`make demo`: the whole product on this machine, as a new user would run it.

Starts Redis if it is down, migrates, creates a demo admin, starts an embed worker, an
index worker and beat, imports 2,000 Fashion-MNIST garments through them, prints the
top 10 for a held-out query and writes its sheet, then serves the storefront and admin
on 127.0.0.1:8000 until Ctrl-C, SIGTERM or SIGHUP.

Every child runs in a session of its own, so a signal reaches the demo alone, which then
stops them all: SIGTERM to each child's process group (warm shutdown), SIGKILL to whatever
is left after a grace period. It does the same when a worker, beat or the web server dies,
naming it. One demo at a time per data dir and per port: a second one names the running
one and exits with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import redis

from config.settings import base as base_settings

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
DATA = Path(base_settings.DATA_DIR)
MATRIX = Path(base_settings.LOOKALIKE_MATRIX_DIR)
ENV = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", "LOOKALIKE_DATA_DIR": str(DATA),
       "PYTHONPATH": str(ROOT)}
BROKER = ENV.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GRACE_SECONDS = 20.0  # warm shutdown: a worker finishes its task; then SIGKILL
KILL_WAIT_SECONDS = 5.0
POLL_SECONDS = 0.25
LOG_TAIL_LINES = 20


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def note(text: str) -> None:
    """Report on the way out: the terminal may be gone (SIGHUP), the shutdown must go on."""
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr, flush=True)


# --- One demo per data dir and per port ------------------------------------------------------


class AlreadyRunning(Exception):
    """Another demo holds the data dir or the port (the message names it)."""


def hold_lock(path: Path, owner: str) -> None:
    """Lock ``path`` until this process ends, and write ``owner`` into it.

    An flock belongs to the open file, which stays open on purpose: the OS releases the lock
    when the process dies, however it dies, so it cannot go stale like a pid file. Children
    do not inherit it (``Popen`` closes other descriptors).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = path.read_text().strip() or f"a process holding {path}"
        os.close(fd)
        raise AlreadyRunning(
            f"Another demo is running: {holder}.\nStop it first (Ctrl-C in its terminal, or "
            "SIGTERM to its pid), or give this one another LOOKALIKE_DATA_DIR and --port."
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, owner.encode())


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as runserver binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def claim(port: int | None) -> None:
    """Lock the data dir and, if the demo serves, the port (also against other checkouts)."""
    DATA.mkdir(parents=True, exist_ok=True)
    serving = "not serving" if port is None else f"serving http://127.0.0.1:{port}/"
    owner = f"pid {os.getpid()}, {serving}, data dir {DATA}"
    hold_lock(DATA / "demo.lock", owner)
    if port is None:
        return
    hold_lock(Path(tempfile.gettempdir()) / f"lookalike-demo-{os.getuid()}-port-{port}.lock", owner)
    if not port_free(port):
        raise AlreadyRunning(f"Port {port} on 127.0.0.1 is in use by another program: pass --port.")


# --- Children ---------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path | None  # None: its output goes to the demo's own

    def describe_exit(self) -> str:
        code = self.proc.returncode
        if code is None or code >= 0:
            return f"exited with status {code}"
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:  # a real-time signal, say
            return f"was killed by signal {-code}"


class Stopped(Exception):
    def __init__(self, signum: signal.Signals) -> None:
        super().__init__(f"{signum.name}: stopping the demo")


class ChildFailed(Exception):
    """A worker, beat or the web server ended, or a step failed: the report names it."""

    def __init__(self, child: Child) -> None:
        super().__init__(child.name)
        self.child = child

    def report(self) -> str:
        child = self.child
        text = f"{child.name} (pid {child.proc.pid}) {child.describe_exit()}"
        if child.log is None:
            return f"{text}; its output is above."
        return f"{text}; the end of {child.log}:\n{tail(child.log)}"


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 16 * 1024))
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(unreadable: {exc})"


def live_groups(pgids: list[int]) -> set[int]:
    """The process groups among ``pgids`` that still hold a live process.

    A zombie does not count: pool processes of a killed worker are left to init to reap.
    """
    maybe = set()
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, 0)  # counts zombies too: look closer below
            maybe.add(pgid)
    if not maybe or not Path("/proc/self/stat").exists():
        return maybe
    alive = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if int(group) in maybe and state != "Z":
            alive.add(int(group))
    return alive


@dataclass
class Supervisor:
    """The demo's children, each leading its own session, and the signals that stop them."""

    children: list[Child] = field(default_factory=list)
    received: signal.Signals | None = None
    stopping: bool = False
    hurry: bool = False  # a second signal: skip the rest of the grace period

    def install_signal_handlers(self) -> None:
        """Turn SIGINT, SIGTERM and SIGHUP into an orderly stop (Python's default SIGTERM and
        SIGHUP end the process on the spot, leaving the children running)."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only a flag: the main loop polls it, so no exception lands halfway through a spawn.
        if self.stopping or self.received is not None:
            self.hurry = True
        else:
            self.received = signal.Signals(signum)

    def _check_signal(self) -> None:
        if self.received is not None:
            raise Stopped(self.received)

    def start(self, name: str, *argv: str, log: Path | None = None) -> Child:
        self._check_signal()
        out = log.open("ab") if log else None
        try:
            proc = subprocess.Popen(argv, cwd=ROOT, env=ENV, stdout=out,
                                    stderr=subprocess.STDOUT if out else None, start_new_session=True)
        finally:
            if out:
                out.close()
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def run(self, name: str, *argv: str) -> None:
        """Run a step to its end while watching the others; ChildFailed if it fails."""
        child = self.start(name, *argv)
        if self.watch(until=child) != 0:
            raise ChildFailed(child)
        self.children.remove(child)

    def watch(self, until: Child | None = None) -> int:
        """Wait for ``until`` to exit and return its status (None: wait for a signal).

        Raises Stopped on a stop signal, ChildFailed if any other child exits.
        """
        while True:
            self._check_signal()
            for child in self.children:
                if child.proc.poll() is not None:
                    if child is until:
                        return child.proc.returncode
                    raise ChildFailed(child)
            time.sleep(POLL_SECONDS)

    def stop(self) -> None:
        """Warm shutdown of every child's process group, then SIGKILL after the grace period."""
        self.stopping = True
        running = self._running(self.children)
        if not running:
            return
        note(f"stopping {', '.join(child.name for child in running)}…")
        left = self._signal_and_wait(running, signal.SIGTERM, GRACE_SECONDS, interruptible=True)
        if left:
            note(f"killing {', '.join(child.name for child in left)} (still running)")
            left = self._signal_and_wait(left, signal.SIGKILL, KILL_WAIT_SECONDS, interruptible=False)
        for child in left:
            note(f"{child.name}: process group {child.proc.pid} survived SIGKILL")
        if not left:
            note("stopped")

    @staticmethod
    def _running(children: list[Child]) -> list[Child]:
        """The children whose process group (its pgid is the leader's pid) still lives."""
        for child in children:
            child.proc.poll()  # reap the leader: a zombie of ours would count as alive
        alive = live_groups([child.proc.pid for child in children])
        return [child for child in children if child.proc.pid in alive]

    def _signal_and_wait(self, children: list[Child], signum: signal.Signals, seconds: float,
                         *, interruptible: bool) -> list[Child]:
        for child in children:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.killpg(child.proc.pid, signum)
        deadline = time.monotonic() + seconds
        while True:
            left = self._running(children)
            if not left or time.monotonic() > deadline or (interruptible and self.hurry):
                return left
            time.sleep(POLL_SECONDS)


def remove_temp_files() -> None:
    """Temp files of a matrix writer that was killed (a live writer holds an flock on its own)."""
    from similarity import TEMP_PREFIX, TEMP_SUFFIX

    for path in MATRIX.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            path.unlink()


# --- The demo's phases ------------------------------------------------------------------------


def manage(sup: Supervisor, *args: str) -> None:
    sup.run(f"manage.py {args[0]}", PY, "manage.py", *args)


def ensure_redis() -> None:
    """Start a local Redis if nothing answers (the broker the workers use)."""
    if BROKER.startswith("redis://127.0.0.1:6379"):
        subprocess.run([str(ROOT / "scripts" / "ensure-redis.sh")], check=True)
    redis.Redis.from_url(BROKER).ping()


def ensure_admin(sup: Supervisor) -> tuple[str, str]:
    """A superuser 'demo' whose password is kept in var/demo-admin.txt across runs."""
    secret_file = DATA / "demo-admin.txt"
    if secret_file.exists():
        password = secret_file.read_text().strip()
    else:
        password = secrets.token_urlsafe(12)
        secret_file.write_text(password + "\n")
        secret_file.chmod(0o600)
    code = (
        "from django.contrib.auth import get_user_model\n"
        "User = get_user_model()\n"
        "user, _ = User.objects.get_or_create(username='demo', defaults={'email': 'demo@example.com'})\n"
        "user.is_staff = user.is_superuser = True\n"
        f"user.set_password({password!r})\n"
        "user.save()\n"
    )
    manage(sup, "shell", "-c", code)
    return "demo", password


def prepare(sup: Supervisor) -> tuple[str, str]:
    """Redis, the database and the admin: what the workers and the web server need."""
    (DATA / "logs").mkdir(exist_ok=True)
    ensure_redis()
    say("Migrating the database")
    manage(sup, "migrate", "--noinput", "-v", "0")
    return ensure_admin(sup)


def start_workers(sup: Supervisor) -> None:
    celery = [PY, "-m", "celery", "-A", "workers.app"]
    # Embedding: one pool child per core (up to 4), each with its share of LiteRT's threads;
    # on 2 cores, two single-thread embed processes imported 1.15x faster than one of two threads.
    embedders = str(min(os.cpu_count() or 1, 4))
    for queue, children in (("embed", embedders), ("index", "1"), ("rebuild", "1")):
        sup.start(f"{queue} worker", *celery, "worker", "-Q", queue, "-c", children,
                  "-n", f"{queue}@%h", "-l", "info", log=DATA / "logs" / f"worker-{queue}.log")
    sup.start("beat", *celery, "beat", "-l", "info", log=DATA / "logs" / "beat.log")
    print(f"workers and beat started; logs in {DATA / 'logs'}")


def fill_catalog(sup: Supervisor, per_class: int) -> None:
    say(f"Importing {per_class * 10} Fashion-MNIST garments through the workers")
    manage(sup, "import_garments", "--fashion-mnist", "--split", "train",
           "--per-class", str(per_class), "--skip-existing")
    # Fits the category-aware projection (LOOKALIKE_SPACE=lda-blend) on the catalog and
    # rewrites every list in it: what the nightly beat rebuild does.
    say("Full rebuild: fit the projection on the catalog's categories, rewrite every list")
    manage(sup, "rebuild_similarity")


def write_query_image(path: Path) -> None:
    from similarity import load_split, to_photo

    images, _ = load_split("test")
    to_photo(images[1], size=224).save(path)  # a held-out pullover: not in the catalog


def show_top10(sup: Supervisor) -> None:
    query = DATA / "demo-query.png"
    sheet = DATA / "demo-sheet.png"
    write_query_image(query)
    say(f"Top 10 for a held-out photo ({query})")
    manage(sup, "similar", str(query), "-k", "10", "--sheet", str(sheet))


def serve(sup: Supervisor, port: int, user: str, password: str) -> None:
    """The storefront and admin until a stop signal (or until a child dies)."""
    say(f"Serving http://127.0.0.1:{port}/  (admin: http://127.0.0.1:{port}/admin/)")
    print(f"admin login: {user} / {password}")
    print(f"search by photo: http://127.0.0.1:{port}/search/   Ctrl-C to stop")
    sup.start("web server", PY, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload")
    sup.watch()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=200, help="garments per class (10 classes)")
    parser.add_argument("--no-serve", action="store_true", help="stop after the sheet")
    parser.add_argument("--port", type=int, default=8000)
    return parser.parse_args(argv)


def run(sup: Supervisor, args: argparse.Namespace) -> None:
    user, password = prepare(sup)
    start_workers(sup)
    fill_catalog(sup, args.per_class)
    show_top10(sup)
    if not args.no_serve:
        serve(sup, args.port, user, password)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sup = Supervisor()
    sup.install_signal_handlers()
    try:
        claim(None if args.no_serve else args.port)
    except AlreadyRunning as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        run(sup, args)
    except Stopped as exc:
        note(f"\n{exc}")
    except ChildFailed as exc:
        note(f"\n{exc.report()}")
        return 1
    finally:
        sup.stop()
        remove_temp_files()
    return 0


if __name__ == "__main__":
    sys.exit(main())
