"""API keys: made with a secret shown once (only its SHA-256 is kept), and revoked."""

from __future__ import annotations

import secrets

from django.db import transaction
from django.utils import timezone

from catalog.models import ApiKey
from catalog.selectors.api_reads import api_key_hash

KEY_PREFIX = "lk_"


def api_key_create(*, name: str, scope: str) -> tuple[ApiKey, str]:
    """A new key and its secret ("lk_<prefix>_<secret>"), which nothing stores."""
    prefix = secrets.token_hex(4)
    raw = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(name=name, scope=ApiKey.Scope(scope), prefix=prefix, key_sha256=api_key_hash(raw))
    key.full_clean()
    key.save()
    return key, raw


@transaction.atomic
def api_keys_revoke(*, key_ids: list[int]) -> int:
    """Revoke the keys that are still active; returns how many were."""
    return ApiKey.objects.filter(pk__in=key_ids, revoked_at__isnull=True).update(
        revoked_at=timezone.now())
