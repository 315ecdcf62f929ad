"""The ``demo`` marker: ``pytest -m demo`` runs the tests of scripts/demo.py alone."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "demo: starts the real `make demo` (scripts/demo.py) as a subprocess"
    )
