"""One matrix writer at a time, across processes and hosts: a Redis lock with a fencing token.

``writer_lock(name)`` takes a redis-py ``Lock`` (``SET NX PX``, released only by its owner)
with a time to live, then draws a fencing token: an ``INCR`` of a counter stored beside the
lock, done in the same Lua script that checks the lock is still ours. While the lock is held a
watchdog thread renews its time to live (every third of it), so a holder that dies (SIGKILL,
lost host) frees the lock within one TTL, and a live one keeps it however long it works.

Because a holder can still lose the lock without noticing (a pause longer than the TTL, a
network partition, a Redis restart), every write is *fenced*: before publishing a matrix file
and before committing neighbour rows the writer calls ``FencedLock.check()``, which, in one
Lua script, verifies that the lock is still held by this writer **and** that its token is
still the newest one drawn, and renews the TTL; otherwise it raises ``LockLostError`` and the
writer aborts without writing (the task is retried; every write is idempotent).

The lock lives in the Redis given by the ``LOOKALIKE_LOCK_URL`` setting, by default the Celery
broker's.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator

import redis
from django.conf import settings
from redis.exceptions import LockError, LockNotOwnedError

logger = logging.getLogger(__name__)

_PREFIX = "lookalike:lock:"

# A writer's check, called right before each write (``FencedLock.check``): raises if it lost the lock.
Fence = Callable[[], None]

# KEYS: lock, fence. ARGV: lock token. Draw the next fencing token if the lock is ours.
_DRAW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('incr', KEYS[2])
end
return 0
"""

# KEYS: lock, fence. ARGV: lock token, fencing token, ttl ms. Still ours and newest? Renew.
_CHECK = """
if redis.call('get', KEYS[1]) == ARGV[1] and redis.call('get', KEYS[2]) == ARGV[2] then
    redis.call('pexpire', KEYS[1], ARGV[3])
    return 1
end
return 0
"""

_clients: dict[tuple[int, str], redis.Redis] = {}
_clients_lock = threading.Lock()


class LockLostError(RuntimeError):
    """This writer no longer holds the lock, or a newer writer drew a newer fencing token."""


class LockTimeoutError(RuntimeError):
    """The lock could not be acquired within the blocking timeout."""


def lock_url() -> str:
    return settings.LOOKALIKE_LOCK_URL or settings.CELERY_BROKER_URL


def lock_ttl() -> float:
    """Seconds a lock outlives its holder's last renewal (the watchdog renews every TTL/3)."""
    return float(settings.LOOKALIKE_INDEX_LOCK_TTL)


def redis_client(url: str | None = None) -> redis.Redis:
    """One client per process and URL (never inherited across a fork)."""
    url = url or lock_url()
    key = (os.getpid(), url)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
            _clients[key] = client
        return client


def lock_name_for(path: os.PathLike[str] | str) -> str:
    """A lock name for a directory: the same directory gives the same name on every host."""
    return "matrix:" + hashlib.sha256(os.fsencode(os.path.realpath(path))).hexdigest()[:24]


class FencedLock:
    """A Redis lock plus a fencing token; use through ``writer_lock``."""

    def __init__(self, client: redis.Redis, name: str, *, ttl: float, blocking_timeout: float,
                 watchdog: bool = True) -> None:
        self.client = client
        self.name = name
        self.key = _PREFIX + name
        self.fence_key = self.key + ":fence"
        self.ttl = float(ttl)
        self.blocking_timeout = float(blocking_timeout)
        self.token: int | None = None
        self._lock = client.lock(self.key, timeout=self.ttl, sleep=0.05,
                                 blocking_timeout=self.blocking_timeout, thread_local=False)
        self._draw = client.register_script(_DRAW)
        self._check = client.register_script(_CHECK)
        self._watchdog = watchdog
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost = False

    @property
    def _lock_token(self) -> bytes:
        # Before acquire (or after release) no token: b"" matches no holder, so scripts refuse.
        return self._lock.local.token or b""

    def acquire(self) -> int:
        """Block until the lock is ours (or raise ``LockTimeoutError``); return the token."""
        if not self._lock.acquire():
            raise LockTimeoutError(
                f"could not take the lock {self.name} within {self.blocking_timeout:g} s: "
                "another writer holds it"
            )
        token = int(self._draw(keys=[self.key, self.fence_key], args=[self._lock_token]))
        if token == 0:  # expired between SET NX and the script: extremely unlikely
            raise LockLostError(f"lost the lock {self.name} right after taking it")
        self.token = token
        if self._watchdog:
            self._thread = threading.Thread(target=self._renew, name=f"lock-watchdog-{self.name}",
                                            daemon=True)
            self._thread.start()
        logger.debug("lock %s taken, fencing token %s", self.name, token)
        return token

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.check()
            except LockLostError:
                logger.error("lock %s lost while held (token %s)", self.name, self.token)
                return
            except redis.RedisError as exc:
                logger.warning("could not renew lock %s: %s", self.name, exc)

    def check(self) -> None:
        """Raise ``LockLostError`` unless the lock is still ours and our token is the newest;
        renew the TTL when it is. Call right before every write."""
        if self.token is None or self._lost:
            raise LockLostError(f"the lock {self.name} is not held")
        ok = self._check(keys=[self.key, self.fence_key],
                         args=[self._lock_token, self.token, int(self.ttl * 1000)])
        if not ok:
            self._lost = True
            raise LockLostError(
                f"fencing: the lock {self.name} expired or was taken over (token {self.token} is "
                "no longer the newest); this writer must not write"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._lock.release()
        except (LockNotOwnedError, LockError):
            logger.warning("lock %s was no longer ours at release (token %s)", self.name, self.token)
        except redis.RedisError as exc:
            logger.warning("could not release lock %s: %s (it expires in %g s)", self.name, exc,
                           self.ttl)


@contextlib.contextmanager
def writer_lock(name: str, *, blocking_timeout: float, ttl: float | None = None,
                watchdog: bool = True) -> Iterator[FencedLock]:
    """Hold the named fenced lock for the ``with`` block; yields it (call ``check()``)."""
    lock = FencedLock(redis_client(), name, ttl=lock_ttl() if ttl is None else ttl,
                      blocking_timeout=blocking_timeout, watchdog=watchdog)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()
