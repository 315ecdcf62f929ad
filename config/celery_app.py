"""The Celery application (cookiecutter-django's layout): settings come from Django's ``CELERY_*``.

``config/__init__.py`` imports it, so every Django process (web, management commands,
workers) has this app as Celery's current and default app, and the catalog sends tasks by
name through ``celery.current_app`` without importing the worker package. Workers start with
``celery -A workers.app worker``; ``workers.app`` is this object, with the tasks of
``workers.tasks``. With Django configured, Celery's Django fixup makes every task a
``DjangoTask`` (``delay_on_commit``), closes stale database connections around tasks and calls
``django.setup()`` in the worker. Nothing heavy is loaded here: the embedder and the matrix are
created lazily in each worker child (see catalog.engine). The task routes are set here from
``catalog.task_names`` (a module of plain names), so that the settings import no app code.
"""

import os

from celery import Celery

from catalog.task_names import QUEUE_OF

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("lookalike", include=["workers.tasks", "workers.control"])
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_routes = {name: {"queue": queue} for name, queue in QUEUE_OF.items()}
# set_current() (done by the constructor) holds for this thread only; without a default, a
# request thread's current_app would be Celery's unconfigured fallback app.
app.set_default()
