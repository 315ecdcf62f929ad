"""Tests: same as local; conftest points MEDIA_ROOT and the data directories at temp dirs."""

import os

from config.settings.local import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The reference configuration, so the brute-force tests keep their meaning; the adoption
# tests switch to the adopted ones (pad-margin + lda-blend; frame-margin + robust lda-blend +
# colour) explicitly.
LOOKALIKE_PREPROCESS_POLICY = "torchvision"
LOOKALIKE_SPACE = "raw"
LOOKALIKE_METRIC = "euclidean"
LOOKALIKE_COLOUR_WEIGHT = 0.0
LOOKALIKE_PROJECTION_VIEWS = 0
# Tests switch these on (worker processes through the environment).
LOOKALIKE_COLLAPSE_DUPLICATES = env_bool("LOOKALIKE_COLLAPSE_DUPLICATES", False)  # noqa: F405
LOOKALIKE_LISTS_WITHIN_CATEGORY = env_bool("LOOKALIKE_LISTS_WITHIN_CATEGORY", False)  # noqa: F405

# The index writer's lock and fencing counters live in the suite's own Redis database (the one
# tests/worker_fixtures.py flushes before and after the session), never in the default broker's.
LOOKALIKE_LOCK_URL = os.environ.get("LOOKALIKE_LOCK_URL") or (
    f"redis://127.0.0.1:6379/{os.environ.get('LOOKALIKE_TEST_BROKER_DB', '9')}"
)
