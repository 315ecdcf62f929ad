"""Named failpoints, for crash and concurrency tests. Inert until ``configure`` names a
directory (the catalog passes its setting ``LOOKALIKE_FAILPOINT_DIR``; never set it in
production).

Writers call ``failpoint("store.before_publish")`` at a few named moments. A test arms a
failpoint, at the moment it chooses, by writing a file named after it into the failpoint
directory; the file holds the action:

``mark``        append ``<time> <pid> <name>`` to ``<dir>/events`` and go on;
``pause``       mark, write ``<dir>/<name>.paused.<pid>`` (holding the pid, so the test can
                SIGKILL exactly that process), then wait until ``<dir>/<name>.release``
                exists (at most ``max_pause`` seconds, default 300);
``pause-once``  ``pause`` for the first process to get there (it claims
                ``<dir>/<name>.claimed``); every later one only marks.

Names used: ``index.acquire`` (before the index writer lock is requested), ``index.locked``
(the Redis lock is held, the store's flock not yet), ``index.before_neighbours`` (the matrix
delta is published, the neighbour rows are not written yet), ``index.unlocked`` (the writer is
done, the Redis lock not yet released), ``store.before_publish`` (a temp file is written and
fsynced, not yet published).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ACTIONS = ("mark", "pause", "pause-once")
_directory: Path | None = None
_max_pause = 300.0


def configure(directory: str | Path | None, *, max_pause: float = 300.0) -> None:
    """Arm failpoints from ``directory`` (None or "" turns them off again)."""
    global _directory, _max_pause
    _directory = Path(directory) if directory else None
    _max_pause = float(max_pause)


def _mark(directory: Path, name: str) -> None:
    line = f"{time.time():.6f} {os.getpid()} {name}\n".encode()
    fd = os.open(directory / "events", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one small O_APPEND write: lines of processes never mix
    finally:
        os.close(fd)


def _claim(directory: Path, name: str) -> bool:
    try:
        fd = os.open(directory / f"{name}.claimed", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def failpoint(name: str) -> None:
    """Do what the armed failpoint ``name`` says (nothing when not armed or not enabled)."""
    directory = _directory
    if directory is None:
        return
    try:
        action = (directory / name).read_text().strip()
    except FileNotFoundError:
        return
    if action not in ACTIONS:
        raise RuntimeError(f"failpoint {name}: unknown action {action!r}, expected {ACTIONS}")
    _mark(directory, name)
    if action == "mark" or (action == "pause-once" and not _claim(directory, name)):
        return
    paused = directory / f"{name}.paused.{os.getpid()}"
    paused.write_text(str(os.getpid()))
    deadline = time.monotonic() + _max_pause
    release = directory / f"{name}.release"
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    _mark(directory, f"{name}.resumed")
