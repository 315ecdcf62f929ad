"""The management commands run against the suite's real Redis broker and worker subprocess
(tests/worker_fixtures.py). Tests using ``worker`` must be
``@pytest.mark.django_db(transaction=True)`` so the worker sees committed rows.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def media_root(lookalike_storage_dirs):
    """The worker reads images from the session MEDIA_ROOT it was started with: keep that one
    (tests/catalog's read-side fixtures would otherwise point each test at its own temp dir)."""
    return lookalike_storage_dirs["MEDIA_ROOT"]
