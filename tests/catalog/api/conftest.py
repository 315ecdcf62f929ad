"""API tests: keys made through the service, photos made with Pillow."""

from __future__ import annotations

import pytest

from catalog.services.api_keys import api_key_create


@pytest.fixture
def write_key(db) -> str:
    return api_key_create(name="erp", scope="write")[1]


@pytest.fixture
def read_key(db) -> str:
    return api_key_create(name="storefront", scope="read")[1]


def bearer(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}
