"""Publishing a store's files atomically, and the housekeeping around it.

``AtomicPublisher`` writes a file to a temp file in the store's directory (flock'ed so a
cleanup leaves it alone), fsyncs it, calls the store's ``fence`` (see similarity.index.store),
then links (exclusive: fails if the name exists) or replaces it into place and fsyncs the
directory. ``cleanup_temps`` and ``housekeeping`` remove what crashed writers and older
generations left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from similarity.atomic import fsync_dir
from similarity.errors import MatrixError
from similarity.failpoints import failpoint
from similarity.index.store_format import write_npy
from similarity.index.store_listing import RETRIES, TEMP_PREFIX, TEMP_SUFFIX, scan
from similarity.index.store_settings import StoreSettings


class ConcurrentWriterError(MatrixError):
    """Another process wrote the file this writer meant to write: refresh and retry."""


class AtomicPublisher:
    """Publishes files into a store's directory; reads the store's ``directory`` and
    ``fence`` on every call."""

    def __init__(self, store: StoreSettings) -> None:
        self._store = store

    @property
    def directory(self) -> Path:
        return self._store.directory

    def publish(self, path: Path, arrays: dict[str, np.ndarray], *, exclusive: bool) -> None:
        """Atomically write ``arrays`` to ``path`` (exclusive: fail if it exists)."""
        self.publish_with(path, lambda f: np.savez(f, allow_pickle=False, **arrays),
                          exclusive=exclusive)

    def publish_npy(self, name: str, shape: tuple[int, int],
                    blocks: Iterable[np.ndarray]) -> None:
        """Publish a float32 .npy of ``shape`` from row blocks (exclusive)."""
        self.publish_with(self.directory / name, lambda f: write_npy(f, shape, blocks),
                          exclusive=True)

    def publish_with(self, path: Path, write: Callable[[BinaryIO], None], *,
                     exclusive: bool) -> None:
        """Atomically publish what ``write`` writes as ``path`` (exclusive: fail if it
        exists): temp file, fsync, fence, link or replace, fsync the directory."""
        try:
            tmp, f = self._open_temp()
            with f:
                published = False
                try:
                    write(f)
                    f.flush()
                    os.fsync(f.fileno())
                    self._before_publish()  # raises (and the temp file goes) if fenced off
                    if exclusive:
                        os.link(tmp, path)
                    else:
                        os.replace(tmp, path)
                    published = True
                finally:
                    if exclusive or not published:
                        with contextlib.suppress(FileNotFoundError):
                            tmp.unlink()
            fsync_dir(self.directory)
        except FileExistsError:
            raise ConcurrentWriterError(
                f"concurrent writer: {path.name} already exists, written by another process "
                "since this matrix was read; refresh and retry"
            ) from None
        except OSError as e:
            raise MatrixError(f"could not write {path}: {e}") from e

    def link(self, source: Path, path: Path) -> None:
        """Publish an existing durable file under a new name (fenced, no copy)."""
        try:
            self._before_publish()
            os.link(source, path)
            fsync_dir(self.directory)
        except FileExistsError:
            raise ConcurrentWriterError(f"concurrent writer: {path.name} exists") from None
        except OSError as e:
            raise MatrixError(f"could not link {source} to {path}: {e}") from e

    def check_not_superseded(self, path: Path, gen: int) -> None:
        """After publishing into ``gen``: withdraw and fail if a newer base exists."""
        if scan(self.directory).generation > gen:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise ConcurrentWriterError(
                f"concurrent writer: generation {gen} was compacted by another process while "
                f"{path.name} was written; refresh and retry"
            )

    def _before_publish(self) -> None:
        """The crash tests' failpoint, then the fence: raises if no longer the writer."""
        failpoint("store.before_publish")
        fence = self._store.fence
        if fence is not None:
            fence()

    def _open_temp(self) -> tuple[Path, BinaryIO]:
        """A new temp file, exclusively flock'ed so ``cleanup_temps`` leaves it alone."""
        for _ in range(RETRIES):
            fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX,
                                        dir=self.directory)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # A cleanup may have removed the name between mkstemp and flock.
                if Path(name).stat().st_ino == os.fstat(fd).st_ino:
                    return Path(name), os.fdopen(fd, "wb")
            except (BlockingIOError, FileNotFoundError):
                pass
            os.close(fd)
        raise MatrixError(f"could not create a temporary file in {self.directory}")


def cleanup_temps(temps: list[Path]) -> int:
    """Remove the temp files no live writer holds; returns how many."""
    removed = 0
    for path in temps:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if path.stat().st_ino == os.fstat(fd).st_ino:
                path.unlink()
                removed += 1
        except (BlockingIOError, FileNotFoundError):
            pass  # held by a live writer, or already gone
        finally:
            os.close(fd)
    return removed


def remove_stale(directory: Path) -> None:
    """Delete the files of older generations."""
    _unlink_all(scan(directory).stale)


def housekeeping(directory: Path) -> None:
    """Remove crashed writers' temp files and older generations' files."""
    listing = scan(directory)
    cleanup_temps(listing.temps)
    _unlink_all(listing.stale)


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
