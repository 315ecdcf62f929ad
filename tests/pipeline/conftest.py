"""Pipeline tests use the suite's real broker and worker (tests/worker_fixtures.py)."""
