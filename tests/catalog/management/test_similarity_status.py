"""``manage.py similarity_status``: the workers on this deployment's queues, through a real one."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from catalog.deployment import deployment_info
from catalog.selectors.broker_state import Status, WorkerState


@pytest.mark.django_db(transaction=True)
def test_lists_the_running_worker_and_the_queues(worker, settings):
    out = io.StringIO()
    call_command("similarity_status", "--json", "--timeout", "3", stdout=out)
    status = json.loads(out.getvalue())
    assert status["deployment"]["namespace"] == settings.LOOKALIKE_NAMESPACE
    assert status["queues"] == {"embed": 0, "index": 0}
    (found,) = [w for w in status["workers"] if w["info"].get("pid") == worker.pid]
    assert found["queues"] == ["embed", "index"] and found["info"]["queues"] == ["embed", "index"]
    assert found["info"]["code_version"] == deployment_info()["code_version"]
    assert found["info"]["model_key"] == deployment_info()["model_key"]
    assert found["warnings"] == []

    text = io.StringIO()
    call_command("similarity_status", "--timeout", "3", stdout=text)
    assert f"pid {worker.pid}" in text.getvalue() and "queues embed,index" in text.getvalue()


def test_a_worker_with_other_code_model_or_database_is_flagged():
    me = {"namespace": "ns", "database": "sqlite3 a", "code_version": "0.1.0+aaa",
          "model_key": "m/p@1"}
    status = Status(me=me, queues={}, workers=[])
    same = WorkerState(name="w1", info={**me, "pid": 1})
    stale = WorkerState(name="w2", info={**me, "code_version": "0.1.0+old", "model_key": "m/q@1"})
    stranger = WorkerState(name="w3", info={**me, "database": "postgresql other"})
    assert status.warnings(same) == []
    assert status.warnings(stale) == ["runs other code: 0.1.0+old",
                                      "embeds with another model: m/q@1"]
    assert status.warnings(stranger) == ["reads another database: postgresql other"]
    assert status.warnings(WorkerState(name="mute")) == ["did not say who it is (older code?)"]
