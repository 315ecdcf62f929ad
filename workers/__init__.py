"""Celery app (workers.app) and thin tasks (workers.tasks) that call catalog services."""
