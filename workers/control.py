"""Worker start-up hooks, and a remote-control command every worker answers: who it is and
what code and model it runs.

``manage.py similarity_status`` broadcasts it (catalog.selectors.broker_state.workers_state),
so an operator sees a worker that outlived its code, or one that reads another database, at a
glance.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from celery.signals import worker_init, worker_process_init
from celery.worker.control import control_command


@worker_init.connect
def _remember_code_version(**_: Any) -> None:
    """Hash the code as it is when the worker starts, not when it is first asked."""
    from catalog.deployment import code_version

    code_version()


@worker_init.connect
def _remember_pool_size(sender: Any = None, **_: Any) -> None:
    """The pool's size, inherited by its children: their embedders share out the cores."""
    from catalog.engine import worker_pool_size_set

    worker_pool_size_set(int(getattr(sender, "concurrency", 0) or 0))


@worker_process_init.connect
def _cap_math_threads(**_: Any) -> None:
    """Each pool child caps its numpy and faiss threads before its first task."""
    from catalog.engine import worker_threads_limit

    worker_threads_limit()


@control_command()
def lookalike_info(state: Any) -> dict[str, Any]:
    from catalog.deployment import deployment_info

    consumer = state.consumer
    queues = sorted(q.name for q in consumer.task_consumer.queues) if consumer.task_consumer else []
    return {**deployment_info(), "pid": os.getpid(), "host": socket.gethostname(), "queues": queues}
