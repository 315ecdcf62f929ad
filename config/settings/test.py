"""Tests: same as local; conftest points MEDIA_ROOT and the data directories at temp dirs."""

from config.settings.local import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
