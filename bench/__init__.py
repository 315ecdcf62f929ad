"""Lookalike's speed benchmarks and quality experiments, run as modules from the repository root
(the Makefile exports PYTHONPATH):

    python -m bench.run [--quick] [--write-readme]     # make bench: every benchmark, one table
    python -m bench.<name>_bench [--help]              # one benchmark alone
    python -m bench.experiments.clean_quality [--help] # make quality: retrieval quality
    python -m bench.experiments.shop_quality [--help]

``bench.common`` holds what they share, ``bench.worker_procs`` what the benchmarks that run the
product's own processes (workers, gunicorn) share; ``bench.experiments`` the quality experiments.
"""
