"""Development and demo: debug on, an insecure but clearly-marked key if none is given."""

from config.settings.base import *  # noqa: F403
from config.settings.base import env_bool

DEBUG = env_bool("DJANGO_DEBUG", True)
# The development server speaks plain HTTP.
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECRET_KEY = SECRET_KEY or "dev-only-insecure-key-do-not-use-in-production"  # noqa: F405

DATA_DIR.mkdir(parents=True, exist_ok=True)  # noqa: F405
