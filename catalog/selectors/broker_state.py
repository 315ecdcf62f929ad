"""The broker's state for this deployment, read: queue lengths and what workers are doing.

Everything goes through the project's Celery app (``celery.current_app``), so every Redis
key and every control message carries this deployment's namespace (``global_keyprefix``):
another deployment's queues and workers are invisible here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from celery import current_app

from catalog.deployment import deployment_info
from catalog.task_names import EMBED_QUEUE, INDEX_QUEUE

QUEUES = (EMBED_QUEUE, INDEX_QUEUE)
CONTROL_TIMEOUT = 1.0


def queue_lengths(*, queues: tuple[str, ...] = QUEUES) -> dict[str, int]:
    """Messages waiting in each queue (not those a worker has reserved)."""
    lengths: dict[str, int] = {}
    with current_app.connection_for_read() as conn:
        channel = conn.default_channel
        for name in queues:
            # Declaring (not passive: an empty Redis list does not exist) returns the count.
            declared: Any = current_app.amqp.queues[name].bind(channel).queue_declare()
            lengths[name] = int(declared.message_count)
    return lengths


@dataclass
class WorkerState:
    """One worker as it answered: who it is, what it consumes, what it is doing."""

    name: str
    queues: list[str] = field(default_factory=list)
    active: list[str] = field(default_factory=list)  # task names running now
    reserved: int = 0  # tasks prefetched, waiting in the worker
    info: dict[str, Any] = field(default_factory=dict)  # workers.control.lookalike_info


def _by_worker(replies: list[dict[str, Any]] | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for reply in replies or []:
        merged.update(reply)
    return merged


def workers_state(*, timeout: float = CONTROL_TIMEOUT) -> list[WorkerState]:
    """Every worker of this deployment that answers within ``timeout`` seconds."""
    control = current_app.control
    inspect = control.inspect(timeout=timeout)
    queues = inspect.active_queues() or {}
    active = inspect.active() or {}
    reserved = inspect.reserved() or {}
    info = _by_worker(control.broadcast("lookalike_info", reply=True, timeout=timeout))
    names = sorted({*queues, *active, *reserved, *info})
    return [
        WorkerState(
            name=name,
            queues=sorted(q["name"] for q in queues.get(name, [])),
            active=[t["name"] for t in active.get(name, [])],
            reserved=len(reserved.get(name, [])),
            info=info.get(name, {}),
        )
        for name in names
    ]


@dataclass
class Status:
    """This deployment as its own process sees it, its queues and the workers that answer."""

    me: dict[str, str]
    queues: dict[str, int]
    workers: list[WorkerState]

    def warnings(self, worker: WorkerState) -> list[str]:
        """What is wrong with a worker compared with this process: stale code, other model,
        other database (a stranger sharing the namespace), or no answer about itself."""
        if not worker.info:
            return ["did not say who it is (older code?)"]
        checks = (("code_version", "runs other code"), ("model_key", "embeds with another model"),
                  ("database", "reads another database"))
        return [f"{text}: {worker.info.get(key)}" for key, text in checks
                if worker.info.get(key) != self.me[key]]


def deployment_status(*, timeout: float = CONTROL_TIMEOUT) -> Status:
    return Status(me=deployment_info(), queues=queue_lengths(), workers=workers_state(timeout=timeout))
