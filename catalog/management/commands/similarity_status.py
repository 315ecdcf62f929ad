"""``manage.py similarity_status [--json]``: this deployment's queues and the workers on them."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from catalog.selectors.broker_state import Status, WorkerState, deployment_status


class Command(BaseCommand):
    help = (
        "List the workers consuming this deployment's queues (host, pid, queues, code version, "
        "model key) and the queue lengths; flag workers whose code, model or database differ."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument("--timeout", type=float, default=1.0,
                            help="seconds to wait for the workers' answers (default 1)")

    def handle(self, *args: Any, **options: Any) -> None:
        status = deployment_status(timeout=options["timeout"])
        if options["json"]:
            self.stdout.write(json.dumps(_as_json(status), indent=2, sort_keys=True))
            return
        me = status.me
        self.stdout.write(f"deployment {me['namespace']}: {me['database']}")
        self.stdout.write(f"this code {me['code_version']}, model {me['model_key']}")
        queues = ", ".join(f"{name} {n}" for name, n in status.queues.items())
        self.stdout.write(f"queues: {queues}")
        if not status.workers:
            self.stdout.write(self.style.WARNING("no worker answered: nothing consumes the queues"))
        for worker in status.workers:
            self._worker(status, worker)

    def _worker(self, status: Status, worker: WorkerState) -> None:
        info = worker.info
        line = (f"{worker.name}  host {info.get('host', '?')}  pid {info.get('pid', '?')}  "
                f"queues {','.join(worker.queues) or '-'}  code {info.get('code_version', '?')}  "
                f"model {info.get('model_key', '?')}  running {len(worker.active)}  "
                f"reserved {worker.reserved}")
        problems = status.warnings(worker)
        self.stdout.write(self.style.WARNING(f"{line}  !! {'; '.join(problems)}") if problems
                          else line)


def _as_json(status: Status) -> dict[str, Any]:
    return {
        "deployment": status.me,
        "queues": status.queues,
        "workers": [{**asdict(w), "warnings": status.warnings(w)} for w in status.workers],
    }
