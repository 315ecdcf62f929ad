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


def add_follow_arguments(parser: argparse.ArgumentParser, *, what: str) -> None:
    """--no-wait, --timeout, --poll-interval and --no-progress of a command that queues
    ``what`` to the workers and follows them."""
    parser.add_argument("--no-wait", action="store_true",
                        help=f"queue {what} and exit without following the workers")
    parser.add_argument("--timeout", type=non_negative_float, default=3600.0,
                        help="seconds to follow the workers before giving up (default 3600)")
    parser.add_argument("--poll-interval", type=non_negative_float, default=0.5,
                        help=argparse.SUPPRESS)
    parser.add_argument("--no-progress", action="store_true", help="draw no progress bars")
