"""Settings shared by every environment; everything that differs comes from the environment."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dj_database_url

BASE_DIR = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("LOOKALIKE_DATA_DIR", BASE_DIR / "var")).resolve()


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


SECRET_KEY = os.environ.get("SECRET_KEY", "")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_celery_beat",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "corsheaders",
    "catalog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL",
        default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Workers and web share the file: wait for locks instead of failing at once. IMMEDIATE
    # transactions take the write lock up front (a deferred one that reads, then writes,
    # fails at once with "database is locked" when another process writes); WAL lets
    # readers go on while one process writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=30,
        transaction_mode="IMMEDIATE",
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", DATA_DIR / "media"))

# Uploads: Django's own cap applies to the request body; images are also checked by size.
LOOKALIKE_MAX_UPLOAD_BYTES = int(os.environ.get("LOOKALIKE_MAX_UPLOAD_BYTES", 10 * 1024 * 1024))
LOOKALIKE_MAX_IMAGE_PIXELS = int(os.environ.get("LOOKALIKE_MAX_IMAGE_PIXELS", 50_000_000))
DATA_UPLOAD_MAX_MEMORY_SIZE = LOOKALIKE_MAX_UPLOAD_BYTES + 1024 * 1024
# Photos a product may have: its main photo and up to this many minus one further photos (admin
# inline, import folder per product). Its vector is the mean of its photos' (docs/quality.md).
LOOKALIKE_MAX_PHOTOS = int(os.environ.get("LOOKALIKE_MAX_PHOTOS", 5))
LOOKALIKE_DATA_DIR = DATA_DIR
# The converted model (a cache baked into an image, say); written once by `make model`.
LOOKALIKE_MODEL_DIR = Path(os.environ.get("LOOKALIKE_MODEL_DIR", DATA_DIR / "models"))
# Debian's dataset-fashion-mnist, for `import_garments --fashion-mnist` and the demo.
LOOKALIKE_FASHION_MNIST_DIR = Path(
    os.environ.get("LOOKALIKE_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
# Crash tests only (similarity/failpoints.py): the directory a test arms failpoints in, and the
# longest a paused failpoint waits. Empty in production: failpoints are inert.
LOOKALIKE_FAILPOINT_DIR = os.environ.get("LOOKALIKE_FAILPOINT_DIR", "")
LOOKALIKE_FAILPOINT_MAX_PAUSE = float(os.environ.get("LOOKALIKE_FAILPOINT_MAX_PAUSE", 300))
# Reliability tests only (catalog/services/queue.py): send every task 1 + n times with one id.
LOOKALIKE_TEST_DUPLICATE_SENDS = int(os.environ.get("LOOKALIKE_TEST_DUPLICATE_SENDS", 0) or 0)
LOOKALIKE_MATRIX_DIR = Path(os.environ.get("LOOKALIKE_MATRIX_DIR", DATA_DIR / "matrix"))
# The default configuration (docs/quality.md, "The default configuration in the catalog"):
# frame-margin@3 preprocessing
# (find the garment, crop to it, pad with a margin), the LDA-blended-with-cosine projection
# refitted at every full rebuild on the catalog plus augmented views of it, and the garment's
# colour descriptor blended in. LOOKALIKE_METRIC applies to the "raw" space only (the
# reference: torchvision + raw + euclidean).
LOOKALIKE_PREPROCESS_POLICY = os.environ.get("LOOKALIKE_PREPROCESS_POLICY", "frame-margin")
# The embedding model: "fp32" (the reference) or "int8" (about 2x faster, not as close to the
# reference: bench/int8_bench.py). Changing it makes stored vectors stale (the rebuild migrates).
LOOKALIKE_EMBED_PRECISION = os.environ.get("LOOKALIKE_EMBED_PRECISION", "fp32")
# LiteRT threads per embedding process. 0: a worker's pool child takes the cores (at most 4)
# shared out among the pool's children (-c 2 on 2 cores: one each); any other process takes
# them all. With several separate embed worker processes on one machine, give each
# cores / processes threads, so they do not fight.
LOOKALIKE_EMBED_THREADS = int(os.environ.get("LOOKALIKE_EMBED_THREADS", 0))
LOOKALIKE_SPACE = os.environ.get("LOOKALIKE_SPACE", "lda-blend")
LOOKALIKE_METRIC = os.environ.get("LOOKALIKE_METRIC", "euclidean")
# Weight of the colour descriptor beside the projected shape vector in the lda-blend space:
# "auto" (each full rebuild chooses it from 0, 0.25, 0.5, 1, 2 by cross-validation inside the
# catalog and stores it with the projection, docs/quality.md) or a number that fixes it (0:
# shape only). catalog/space.py checks it. Changing it makes the matrix stale.
LOOKALIKE_COLOUR_WEIGHT: str | float = os.environ.get("LOOKALIKE_COLOUR_WEIGHT", "auto")
# Augmented (shopper-style) views the full rebuild embeds to fit the robust projection: 2 per
# labelled product, at most this many (a seeded sample of products beyond); 0 fits the plain
# blend on the catalog alone.
LOOKALIKE_PROJECTION_VIEWS = int(os.environ.get("LOOKALIKE_PROJECTION_VIEWS", 4_000))
# Near-duplicate collapsing of written lists (off by default: see docs/quality.md, Adoption).
LOOKALIKE_COLLAPSE_DUPLICATES = env_bool("LOOKALIKE_COLLAPSE_DUPLICATES", False)
LOOKALIKE_DUPLICATE_THRESHOLD = float(os.environ.get("LOOKALIKE_DUPLICATE_THRESHOLD", 0.01))
# Index layout (similarity/index/layout.py): "dense" keeps the N x N matrix (4·N² bytes), "topk"
# only vectors and exact top-k lists; "auto" is dense up to LOOKALIKE_MAX_ITEMS products and
# moves to top-k, by itself and without losing a list, when the catalog grows past it.
LOOKALIKE_INDEX_LAYOUT = os.environ.get("LOOKALIKE_INDEX_LAYOUT", "auto")
LOOKALIKE_MAX_ITEMS = int(os.environ.get("LOOKALIKE_MAX_ITEMS", 20_000))
# Lists inside a product's category (true: one index per category, similarity/index/partitions.py;
# products without a category list among themselves) or across the catalog (false). Search by
# photo without a category still spans the catalog. Switching it makes the index stale: the next
# full rebuild rebuilds it and rewrites every list, the old lists visible until then.
LOOKALIKE_LISTS_WITHIN_CATEGORY = env_bool("LOOKALIKE_LISTS_WITHIN_CATEGORY", True)
# Ranking engine of the top-k layout's scans: "numpy" (BLAS blocks) or "faiss".
# faiss: 1.41x less CPU than numpy BLAS blocks on the rebuild's blocks (make bench, 2026-12-02).
LOOKALIKE_KNN_ENGINE = os.environ.get("LOOKALIKE_KNN_ENGINE", "faiss")
# Distributed rebuild (top-k layout): rows per block task on the "rebuild" queue, and how long
# the writer waits without any block finishing before it computes the rest itself (it does
# not wait when no rebuild worker answers its broadcast).
LOOKALIKE_REBUILD_BLOCK_ROWS = int(os.environ.get("LOOKALIKE_REBUILD_BLOCK_ROWS", 8_192))
LOOKALIKE_REBUILD_BLOCK_TIMEOUT = int(os.environ.get("LOOKALIKE_REBUILD_BLOCK_TIMEOUT", 600))
# Threads of numpy's BLAS and faiss's OpenMP in each worker process (workers scale by
# processes; measured during a 3,000-garment import: the index worker's CPU 6.6 s with two
# BLAS threads, 4.4 s with one, as the embed worker holds both cores).
LOOKALIKE_WORKER_MATH_THREADS = int(os.environ.get("LOOKALIKE_WORKER_MATH_THREADS", 1))
# Products per embed task. Its index task then indexes them together: an index task's fixed
# cost (lock, queries, one commit) is paid once per batch (index CPU per product at N = 2,000:
# 4.2 ms in batches of 32, 1.9 ms in batches of 128; bench/pipeline_bench.py).
LOOKALIKE_EMBED_BATCH = int(os.environ.get("LOOKALIKE_EMBED_BATCH", 128))
LOOKALIKE_BULK_MAX_FILES = int(os.environ.get("LOOKALIKE_BULK_MAX_FILES", 500))
# The index writer's Redis lock (catalog/services/locking.py): where it lives ("" = the
# broker's Redis), how long it outlives a dead holder, how long a writer waits for it.
LOOKALIKE_LOCK_URL = os.environ.get("LOOKALIKE_LOCK_URL", "")
LOOKALIKE_INDEX_LOCK_TTL = float(os.environ.get("LOOKALIKE_INDEX_LOCK_TTL", 30))
LOOKALIKE_INDEX_LOCK_TIMEOUT = float(os.environ.get("LOOKALIKE_INDEX_LOCK_TIMEOUT", 600))
LOOKALIKE_STUCK_AFTER_SECONDS = int(os.environ.get("LOOKALIKE_STUCK_AFTER_SECONDS", 15 * 60))
LOOKALIKE_SEARCH_RATE = os.environ.get("LOOKALIKE_SEARCH_RATE", "30/m")
# Search by photo without a category shows the category predicted from the photo when the
# prediction is confident (a vote of the nearest products, its size and confidence chosen by
# each full rebuild: catalog/search_vote.py); off: it searches every category.
LOOKALIKE_SEARCH_PREDICT_CATEGORY = env_bool("LOOKALIKE_SEARCH_PREDICT_CATEGORY", True)


def default_namespace(database: Mapping[str, Any]) -> str:
    """A deployment is its database: two checkouts (their own SQLite files) or two PostgreSQL
    databases get different namespaces on one Redis without configuration."""
    where = "|".join(str(database.get(key) or "") for key in ("ENGINE", "HOST", "PORT", "NAME"))
    return "lookalike-" + hashlib.sha256(where.encode()).hexdigest()[:10]


# Every Redis key of this deployment's broker (queues, unacked messages, worker control)
# starts with "<namespace>:": deployments sharing a Redis never take each other's tasks.
LOOKALIKE_NAMESPACE = os.environ.get("LOOKALIKE_NAMESPACE") or default_namespace(DATABASES["default"])
# Products pending or processing this long while the queues are empty and every worker is
# idle were lost: the idle sweep (beat, every LOOKALIKE_IDLE_SWEEP_SECONDS) re-queues them.
LOOKALIKE_IDLE_STUCK_SECONDS = int(os.environ.get("LOOKALIKE_IDLE_STUCK_SECONDS", 30))
LOOKALIKE_IDLE_SWEEP_SECONDS = int(os.environ.get("LOOKALIKE_IDLE_SWEEP_SECONDS", 30))

# Celery (section 7 of the design notes: at-least-once, long CPU tasks, separate queues).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", None)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "embed"
# Routes (task name → queue) are the catalog's: config/celery_app.py sets them from
# catalog.task_names, so that settings import no app code.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", 3600)),
    "global_keyprefix": f"{LOOKALIKE_NAMESPACE}:",
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# The search rate limit counts in the cache: with several web processes it must be shared,
# so production points CACHE_URL at Redis; local runs keep a per-process memory cache.
CACHE_URL = os.environ.get("CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# ---- REST API (/api/v1/, catalog/api/) ------------------------------------------------------
# Reads (lists, products, search) without a key; writes always need a key with the write scope.
LOOKALIKE_API_OPEN_READS = env_bool("LOOKALIKE_API_OPEN_READS", True)
LOOKALIKE_API_KEY_RATE = os.environ.get("LOOKALIKE_API_KEY_RATE", "1200/m")
LOOKALIKE_API_CLIENT_RATE = os.environ.get("LOOKALIKE_API_CLIENT_RATE", "600/m")
# max-age of a similar-items answer (it carries an ETag: a changed list gets a new one).
LOOKALIKE_API_CACHE_SECONDS = int(os.environ.get("LOOKALIKE_API_CACHE_SECONDS", 60))
# Rows (and photos) in one POST /api/v1/products/batch.
LOOKALIKE_API_BATCH_MAX_ROWS = int(os.environ.get("LOOKALIKE_API_BATCH_MAX_ROWS", 100))
# Reverse proxies in front of the app that append to X-Forwarded-For (0: use REMOTE_ADDR).
LOOKALIKE_TRUSTED_PROXIES = int(os.environ.get("LOOKALIKE_TRUSTED_PROXIES", 0))
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", "")
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_HEADERS = ("accept", "authorization", "content-type", "if-none-match", "x-api-key")
CORS_EXPOSE_HEADERS = ("etag", "retry-after")
# A bulk admin upload is one request with up to LOOKALIKE_BULK_MAX_FILES files.
DATA_UPLOAD_MAX_NUMBER_FILES = LOOKALIKE_BULK_MAX_FILES
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Lookalike API",
    "DESCRIPTION": "Products by SKU, their similar items, and search by photo.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "catalog.api.schema_hooks.add_error_responses",
    ],
}

# Behind HTTPS (a proxy that sets X-Forwarded-Proto): session and CSRF cookies only over HTTPS,
# the default. A shop served over plain HTTP (docker compose on a LAN host) turns both off;
# local.py turns them off for development. CSRF_TRUSTED_ORIGINS lists the origins
# (scheme://host[:port]) a form may be posted from when the proxy changes host or port.
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
