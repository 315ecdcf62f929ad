import pytest

from similarity.batching import chunked


def test_chunked_covers_everything_in_order_with_a_short_tail():
    assert list(chunked([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    assert list(chunked([], 3)) == []
    assert list(chunked(range(3), 5)) == [[0, 1, 2]]


def test_chunked_refuses_a_size_below_one():
    with pytest.raises(ValueError, match="at least 1, got 0"):
        list(chunked([1], 0))
