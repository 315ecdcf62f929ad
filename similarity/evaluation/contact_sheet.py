"""Contact sheets: each row is a query image on the left and its neighbours to its right.

Used by ``manage.py similar --sheet`` (one row) and by quality benchmarks (many rows, each
neighbour framed green or red). Pure Pillow, no Django::

    sheet = draw_sheet([SheetRow(query, [SheetTile(img, "#1 Trouser\\n0.123", "green")])])

Geometry (all in pixels, see :class:`SheetLayout`): every image is fitted into a square
``tile`` box centred on white; captions go under their tile; ``pad`` surrounds everything
(a frame is drawn in the padding, just outside its tile box); ``gap`` separates the query
column from the neighbours. :func:`sheet_geometry` gives the size and every tile box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont, ImageOps

__all__ = ["SheetGeometry", "SheetLayout", "SheetRow", "SheetTile", "draw_sheet", "sheet_geometry"]

Colour = str | tuple[int, int, int]
Box = tuple[int, int, int, int]


class SheetTile(NamedTuple):
    """One neighbour: its image, a caption (may hold newlines) and an optional frame colour.

    A plain ``(image, caption)`` or ``(image, caption, colour)`` tuple works too.
    """

    image: Image.Image
    caption: str = ""
    frame: Colour | None = None


@dataclass(frozen=True)
class SheetRow:
    """A query image, its neighbours left to right, and the query's own caption and frame."""

    query: Image.Image
    tiles: Sequence[SheetTile | tuple] = field(default_factory=list)
    caption: str = "query"
    frame: Colour | None = None

    def neighbour_tiles(self) -> list[SheetTile]:
        return [t if isinstance(t, SheetTile) else SheetTile(*t) for t in self.tiles]


@dataclass(frozen=True)
class SheetLayout:
    tile: int = 160
    pad: int = 10
    gap: int = 28
    frame_width: int = 5
    font_size: int = 13
    line_spacing: int = 3
    background: Colour = (255, 255, 255)
    text_colour: Colour = (40, 40, 40)
    separator: Colour = (200, 200, 200)

    def __post_init__(self) -> None:
        if self.tile < 8:
            raise ValueError(f"tile must be at least 8 px, got {self.tile}")
        if self.frame_width > self.pad:
            raise ValueError(
                f"frame_width ({self.frame_width}) must fit in the padding ({self.pad})"
            )

    @property
    def line_height(self) -> int:
        return self.font_size + self.line_spacing


@dataclass(frozen=True)
class SheetGeometry:
    """Where everything goes for a given list of rows and layout."""

    layout: SheetLayout
    rows: int
    columns: int  # neighbour columns (the widest row)
    caption_lines: int

    @property
    def caption_height(self) -> int:
        if not self.caption_lines:
            return 0
        return self.layout.frame_width + 2 + self.caption_lines * self.layout.line_height

    @property
    def row_height(self) -> int:
        return self.layout.tile + self.caption_height + self.layout.pad

    @property
    def size(self) -> tuple[int, int]:
        lay = self.layout
        if self.columns:
            width = lay.pad + lay.tile + lay.gap + self.columns * (lay.tile + lay.pad)
        else:
            width = lay.pad + lay.tile + lay.pad
        return width, lay.pad + self.rows * self.row_height

    def tile_box(self, row: int, column: int) -> Box:
        """(left, top, right, bottom), right/bottom exclusive, of a tile's image box.

        Column 0 is the query; columns 1.. are its neighbours.
        """
        lay = self.layout
        if not 0 <= row < self.rows or not 0 <= column <= self.columns:
            raise IndexError(f"no tile at row {row}, column {column}")
        top = lay.pad + row * self.row_height
        left = lay.pad if column == 0 else lay.pad + lay.tile + lay.gap + (column - 1) * (lay.tile + lay.pad)
        return left, top, left + lay.tile, top + lay.tile


def _lines(caption: str) -> int:
    return len(caption.splitlines()) if caption else 0


def sheet_geometry(rows: Sequence[SheetRow], layout: SheetLayout | None = None) -> SheetGeometry:
    layout = layout or SheetLayout()
    columns = max((len(r.tiles) for r in rows), default=0)
    lines = 0
    for r in rows:
        lines = max(lines, _lines(r.caption), *(_lines(t.caption) for t in r.neighbour_tiles()))
    return SheetGeometry(layout=layout, rows=len(rows), columns=columns, caption_lines=lines)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _fit_text(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> str:
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _paste_tile(
    sheet: Image.Image, draw: ImageDraw.ImageDraw, box: Box, tile: SheetTile,
    layout: SheetLayout, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
) -> None:
    left, top, right, bottom = box
    fitted = ImageOps.contain(tile.image.convert("RGB"), (layout.tile, layout.tile), Image.Resampling.LANCZOS)
    sheet.paste(
        fitted,
        (left + (layout.tile - fitted.width) // 2, top + (layout.tile - fitted.height) // 2),
    )
    if tile.frame is not None:
        w = layout.frame_width
        draw.rectangle((left - w, top - w, right - 1 + w, bottom - 1 + w), outline=tile.frame, width=w)
    y = bottom + layout.frame_width + 2
    for line in tile.caption.splitlines():
        draw.text((left, y), _fit_text(line, font, layout.tile), fill=layout.text_colour, font=font)
        y += layout.line_height


def draw_sheet(rows: Sequence[SheetRow], layout: SheetLayout | None = None) -> Image.Image:
    """An RGB picture: one line per row, the query on the left and its neighbours to its right."""
    if not rows:
        raise ValueError("a sheet needs at least one row")
    geometry = sheet_geometry(rows, layout)
    layout = geometry.layout
    sheet = Image.new("RGB", geometry.size, layout.background)
    draw = ImageDraw.Draw(sheet)
    font = _font(layout.font_size)
    if geometry.columns:
        x = layout.pad + layout.tile + layout.gap // 2
        draw.line((x, layout.pad, x, geometry.size[1] - layout.pad), fill=layout.separator, width=1)
    for r, row in enumerate(rows):
        query = SheetTile(row.query, row.caption, row.frame)
        _paste_tile(sheet, draw, geometry.tile_box(r, 0), query, layout, font)
        for c, tile in enumerate(row.neighbour_tiles(), start=1):
            _paste_tile(sheet, draw, geometry.tile_box(r, c), tile, layout, font)
    return sheet
