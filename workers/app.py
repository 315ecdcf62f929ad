"""The Celery application for ``celery -A workers.app worker|beat``: the project's one app
(config/celery_app.py), whose tasks live in workers.tasks."""

from config.celery_app import app

__all__ = ("app",)
