"""Argument types shared by the management commands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", int, float)


def _bounded(convert: Callable[[str], T], minimum: T, words: str) -> Callable[[str], T]:
    def parse(text: str) -> T:
        value = convert(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{words}, got {value}")
        return value

    return parse


positive_int = _bounded(int, 1, "must be at least 1")
non_negative_int = _bounded(int, 0, "must not be negative")
non_negative_float = _bounded(float, 0.0, "must not be negative")
