"""The Celery application: ``celery -A workers.app worker -Q embed,index``; tasks in workers.tasks.

Settings come from Django's (``CELERY_*``). With Django configured, Celery's Django fixup
makes every task a ``DjangoTask`` (``delay_on_commit``), closes stale database connections
around tasks and calls ``django.setup()`` in the worker. Nothing heavy is loaded here: the
embedder and the matrix are created lazily in each worker child (see catalog.services.engine).
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("lookalike", include=["workers.tasks"])
app.config_from_object("django.conf:settings", namespace="CELERY")
