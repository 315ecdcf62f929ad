"""Tests: same as local; conftest points MEDIA_ROOT and the data directories at temp dirs."""

from config.settings.local import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# The reference configuration, so the brute-force tests keep their meaning; the adoption
# tests switch to the adopted one (pad-margin + lda-blend) explicitly.
LOOKALIKE_PREPROCESS_POLICY = "torchvision"
LOOKALIKE_SPACE = "raw"
LOOKALIKE_METRIC = "euclidean"
LOOKALIKE_COLLAPSE_DUPLICATES = False
