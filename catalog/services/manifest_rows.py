"""A shop's export as rows to sync: a manifest file (CSV or JSON Lines, photos under an images
folder) or the REST API's batch (JSON rows, photos uploaded with them).

A problem with the whole manifest (missing, not UTF-8, unknown or missing CSV columns) raises
:class:`ManifestError` before anything is written; a problem with one row becomes a
:class:`RowFailure` with its line and reason, and the other rows go in.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from catalog.vectors import image_limits
from similarity import ImageRejected

MANIFEST_FIELDS = ("sku", "name", "category", "photo")
MANIFEST_SUFFIXES = (".csv", ".jsonl")

PhotoLoader = Callable[[], bytes]


class ManifestError(ValueError):
    """The manifest as a whole cannot be read; nothing was written."""


@dataclass(frozen=True)
class RowFailure:
    line: int
    sku: str
    reason: str
    message: str


@dataclass(frozen=True)
class SyncRow:
    """One product as the shop has it. ``photo`` reads the photo's bytes; without one the
    stored photo is kept, and ``photo_sha256`` must name it."""

    line: int
    sku: str
    name: str
    category: str
    photo: PhotoLoader | None = None
    photo_label: str = ""
    photo_sha256: str = ""


@dataclass
class ParsedRows:
    rows: list[SyncRow] = field(default_factory=list)
    failures: list[RowFailure] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows) + len(self.failures)


class RowRefused(Exception):
    """One row cannot go in: its reason (a code) and what was wrong, for a person."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


# ------------------------------------------------------------------------------- photos


def photo_read_bounded(read: Callable[[int], bytes], *, label: str) -> bytes:
    """At most the upload limit of bytes from ``read``; more is refused (``too_large``)."""
    limit = image_limits().max_bytes
    data = read(limit + 1)
    if len(data) > limit:
        raise ImageRejected("too_large", f"{label} is over the {limit:,} bytes limit")
    return data


def _read_file(path: Path, label: str) -> bytes:
    with path.open("rb") as fh:
        return photo_read_bounded(fh.read, label=label)


def photo_in_folder(root: Path, relative: str) -> PhotoLoader:
    """A loader for ``relative`` under ``root``; a path that leads outside it (absolute,
    "..", a symlink out) is refused (``photo_outside``) before anything is read."""
    base = root.resolve()
    target = (base / relative).resolve()
    if Path(relative).is_absolute() or not target.is_relative_to(base):
        raise RowRefused("photo_outside",
                         f"photo {relative!r} is outside the images folder {root}")
    return partial(_read_file, target, relative)


# ------------------------------------------------------------------------------- fields


def _text(row: Mapping[str, Any], name: str) -> str:
    value = row.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and name == "sku":
        value = str(value)  # a JSON export may write a numeric SKU as a number
    if value is not None and not isinstance(value, str):
        raise RowRefused("invalid", f"{name} must be text, got {type(value).__name__}")
    return (value or "").strip()


def row_sku(row: Mapping[str, Any]) -> str:
    """The row's SKU as given, or "" (a failed row still names its product, if it can)."""
    try:
        return _text(row, "sku")
    except RowRefused:
        return ""


def row_from_mapping(line: int, row: Mapping[str, Any], *, allowed: tuple[str, ...],
                     photo: Callable[[str], PhotoLoader]) -> SyncRow:
    """A :class:`SyncRow` from one row's fields; ``photo`` turns the photo field into a
    loader. Raises :class:`RowRefused` naming what was wrong."""
    unknown = sorted(set(row) - set(allowed))
    if unknown:
        raise RowRefused("unknown_field", f"unknown field(s) {', '.join(unknown)}; "
                                          f"the fields are {', '.join(allowed)}")
    values = {name: _text(row, name) for name in allowed}
    missing = [name for name in ("sku", "name", "category") if not values[name]]
    if not values["photo"] and not values.get("photo_sha256"):
        missing.append("photo")
    if missing:
        raise RowRefused("missing_field", f"missing {', '.join(missing)}")
    return SyncRow(line=line, sku=values["sku"], name=values["name"],
                   category=values["category"],
                   photo=photo(values["photo"]) if values["photo"] else None,
                   photo_label=values["photo"], photo_sha256=values.get("photo_sha256", ""))


def rows_collect(numbered: Iterator[tuple[int, Mapping[str, Any] | RowFailure]], *,
                 allowed: tuple[str, ...], photo: Callable[[str], PhotoLoader]) -> ParsedRows:
    """Every numbered row as a :class:`SyncRow` or, if refused, a :class:`RowFailure`."""
    parsed = ParsedRows()
    for line, row in numbered:
        if isinstance(row, RowFailure):
            parsed.failures.append(row)
            continue
        try:
            parsed.rows.append(row_from_mapping(line, row, allowed=allowed, photo=photo))
        except RowRefused as exc:
            parsed.failures.append(RowFailure(line, row_sku(row), exc.reason, exc.message))
    return parsed


# ------------------------------------------------------------------------------- manifests


def _csv_rows(lines: list[str], path: Path) -> Iterator[tuple[int, Mapping[str, Any] | RowFailure]]:
    reader = csv.DictReader(lines, strict=True)
    header = [name.strip() for name in reader.fieldnames or []]
    unknown = sorted(set(header) - set(MANIFEST_FIELDS))
    missing = [name for name in MANIFEST_FIELDS if name not in header]
    if unknown or missing:
        raise ManifestError(
            f"{path}: the header must name the columns {', '.join(MANIFEST_FIELDS)}"
            + (f"; unknown column(s): {', '.join(unknown)}" if unknown else "")
            + (f"; missing column(s): {', '.join(missing)}" if missing else ""))
    reader.fieldnames = header
    start = reader.line_num + 1
    try:
        for row in reader:
            if None in row:
                yield start, RowFailure(start, row_sku(row), "malformed",
                                        f"{len(header) + len(row[None])} values for "
                                        f"{len(header)} columns")
            else:
                yield start, row
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ManifestError(f"{path}, line {reader.line_num}: not valid CSV: {exc}") from exc


def _jsonl_rows(lines: list[str]) -> Iterator[tuple[int, Mapping[str, Any] | RowFailure]]:
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            yield line, RowFailure(line, "", "malformed", f"not valid JSON: {exc.msg}")
            continue
        if not isinstance(row, dict):
            yield line, RowFailure(line, "", "malformed",
                                   f"a row must be a JSON object, got {type(row).__name__}")
            continue
        yield line, row


def _manifest_lines(path: Path) -> list[str]:
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise ManifestError(f"{path}: a manifest is a .csv or .jsonl file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path} is not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise ManifestError(f"cannot read the manifest {path}: {exc.strerror or exc}") from exc
    if not text.strip():
        raise ManifestError(f"{path} is empty")
    return text.splitlines(keepends=True)


def manifest_rows(*, path: Path, images: Path) -> ParsedRows:
    """The rows of the manifest at ``path`` (CSV with a header, or JSON Lines), photos
    relative to the folder ``images``. Raises :class:`ManifestError`."""
    if not images.is_dir():
        raise ManifestError(f"the images folder {images} does not exist or is not a folder")
    lines = _manifest_lines(path)
    numbered = _csv_rows(lines, path) if path.suffix.lower() == ".csv" else _jsonl_rows(lines)
    return rows_collect(numbered, allowed=MANIFEST_FIELDS, photo=partial(photo_in_folder, images))
