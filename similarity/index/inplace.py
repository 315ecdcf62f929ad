"""Reloading an index object in place, whatever its layout."""

from __future__ import annotations

from typing import Any


def adopt_state(target: Any, other: Any) -> None:
    """Make ``target`` hold ``other``'s state. ``other`` may be of the other layout: a reload
    after ``MatrixStore.convert`` changes the class too, so a process's cached object follows
    the switch."""
    target.__class__ = type(other)
    target.__dict__.clear()
    target.__dict__.update(other.__dict__)
