"""limit_math_threads caps numpy's BLAS and faiss's OpenMP pools of the process it runs in."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from similarity.threads import limit_math_threads

_CHILD = """
import json, sys
from similarity.threads import limit_math_threads
import faiss
pools = limit_math_threads(int(sys.argv[1]))
print(json.dumps({"pools": [(p["internal_api"], p["num_threads"]) for p in pools],
                  "faiss": faiss.omp_get_max_threads()}))
"""


def _capped(threads: int) -> dict:
    # A process of its own: the cap is process-wide and would outlive this test otherwise.
    out = subprocess.run([sys.executable, "-c", _CHILD, str(threads)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_blas_and_openmp_pool_is_capped_faiss_included():
    one = _capped(1)
    apis = {api for api, _ in one["pools"]}
    assert {"openblas", "openmp"} <= apis
    assert {n for _, n in one["pools"]} == {1}
    assert one["faiss"] == 1


def test_a_bad_count_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        limit_math_threads(0)
