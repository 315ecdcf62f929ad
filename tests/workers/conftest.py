from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _sends_recorded(no_broker):
    """Tasks run in-process here; whatever they queue is recorded, not sent."""
    return no_broker
