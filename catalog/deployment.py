"""Who this deployment is: its broker namespace, its database and the version of its code.

Workers report these (``workers.control``) so an operator can tell a stranger or a worker
that outlived its code at a glance (``manage.py similarity_status``).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from django.conf import settings
from django.db import connection

from catalog.vectors import vector_key_current

VERSION = "0.1.0"
_CODE_PACKAGES = ("catalog", "similarity", "workers", "config")
_REPO = Path(__file__).resolve().parents[1]


@functools.cache
def code_version() -> str:
    """``<version>+<hash of the code>``: two processes print the same value only when they run
    the same Python files (computed once per process, so a worker that outlived a code change
    keeps reporting the old one)."""
    digest = hashlib.sha256()
    for package in _CODE_PACKAGES:
        for path in sorted((_REPO / package).rglob("*.py")):
            digest.update(str(path.relative_to(_REPO)).encode())
            digest.update(path.read_bytes())
    return f"{VERSION}+{digest.hexdigest()[:10]}"


def database_label() -> str:
    """The database this process reads products from, without credentials."""
    db = connection.settings_dict
    where = f"{db.get('HOST') or ''}:{db.get('PORT') or ''}".strip(":")
    return f"{db['ENGINE'].rsplit('.', 1)[-1]} {db['NAME']}" + (f" at {where}" if where else "")


def deployment_info() -> dict[str, str]:
    """What a worker of this deployment says about itself."""
    return {
        "namespace": settings.LOOKALIKE_NAMESPACE,
        "database": database_label(),
        "code_version": code_version(),
        "model_key": vector_key_current(),
    }
