"""The contact sheet: size, layout and frames (pure Pillow, no Django)."""

from __future__ import annotations

import pytest
from PIL import Image

from similarity.evaluation.contact_sheet import SheetLayout, SheetRow, SheetTile, draw_sheet, sheet_geometry

GREEN = (0, 170, 0)
RED = (220, 0, 0)


def solid(colour, size=(64, 64)) -> Image.Image:
    return Image.new("RGB", size, colour)


def test_one_row_size_and_tiles_in_place():
    layout = SheetLayout(tile=100, pad=10, gap=20, frame_width=4)
    neighbours = [SheetTile(solid((0, 0, 255 - 20 * i)), f"#{i + 1} Trouser\nd = 0.{i}") for i in range(5)]
    rows = [SheetRow(solid((250, 200, 0)), neighbours)]
    sheet = draw_sheet(rows, layout)
    geo = sheet_geometry(rows, layout)

    assert geo.columns == 5 and geo.caption_lines == 2
    # pad + query + gap + 5 x (tile + pad); pad + one row of (tile + caption + pad)
    assert sheet.size == (10 + 100 + 20 + 5 * 110, 10 + 100 + geo.caption_height + 10)
    assert sheet.mode == "RGB"
    # the query tile on the left, each neighbour at its own box (sampled at the centre)
    left, top, right, bottom = geo.tile_box(0, 0)
    assert (left, top) == (10, 10)
    assert sheet.getpixel(((left + right) // 2, (top + bottom) // 2)) == (250, 200, 0)
    for col in range(1, 6):
        left, top, right, bottom = geo.tile_box(0, col)
        assert left == 10 + 100 + 20 + (col - 1) * 110
        assert sheet.getpixel(((left + right) // 2, (top + bottom) // 2)) == (0, 0, 255 - 20 * (col - 1))
    # a caption is drawn under the first neighbour: some dark text pixels there
    left, _, right, bottom = geo.tile_box(0, 1)
    caption = sheet.crop((left, bottom + 4, right, bottom + geo.caption_height))
    assert caption.convert("L").getextrema()[0] < 128
    # no frame asked: white around the tiles
    assert sheet.getpixel((left - 2, bottom - 50)) == (255, 255, 255)


def test_eight_rows_with_green_and_red_frames():
    layout = SheetLayout(tile=80, pad=8, gap=16, frame_width=5)
    rows = []
    for r in range(8):
        tiles = [
            (solid((128, 128, 128), (28, 40)), f"#{c + 1} Shirt\nd = 1.0", GREEN if (r + c) % 2 else RED)
            for c in range(10)
        ]
        rows.append(SheetRow(solid((255, 255, 255 - r)), tiles, caption=f"query {r}\nShirt", frame=(0, 0, 0)))
    sheet = draw_sheet(rows, layout)
    geo = sheet_geometry(rows, layout)

    assert sheet.size == (8 + 80 + 16 + 10 * 88, 8 + 8 * (80 + geo.caption_height + 8))
    for r in range(8):
        for c in range(1, 11):
            left, top, right, bottom = geo.tile_box(r, c)
            want = GREEN if (r + c - 1) % 2 else RED
            mid_x, mid_y = (left + right) // 2, (top + bottom) // 2
            # the frame sits in the padding just outside the box, on all four sides
            for x, y in ((left - 3, mid_y), (right + 2, mid_y), (mid_x, top - 3), (mid_x, bottom + 2)):
                assert sheet.getpixel((x, y)) == want, (r, c, x, y)
            # the (narrow, upscaled) image stays inside: its grey at the centre, white beside it
            assert sheet.getpixel((mid_x, mid_y)) == (128, 128, 128)
            assert sheet.getpixel((left + 2, mid_y)) == (255, 255, 255)
        left, top, _, _ = geo.tile_box(r, 0)
        assert sheet.getpixel((left - 3, top + 10)) == (0, 0, 0)  # the query's own frame
    with pytest.raises(IndexError):
        geo.tile_box(8, 0)


def test_rows_of_different_lengths_and_no_neighbours():
    layout = SheetLayout(tile=50, pad=6, gap=10, frame_width=3)
    alone = draw_sheet([SheetRow(solid((9, 9, 9)), [], caption="")], layout)
    assert alone.size == (6 + 50 + 6, 6 + 50 + 6)
    mixed = [SheetRow(solid((9, 9, 9)), [(solid((1, 2, 3)), "a")]),
             SheetRow(solid((9, 9, 9)), [(solid((1, 2, 3)), "a")] * 3)]
    assert draw_sheet(mixed, layout).width == 6 + 50 + 10 + 3 * 56


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least one row"):
        draw_sheet([])
    with pytest.raises(ValueError, match="frame_width"):
        SheetLayout(pad=2, frame_width=5)
