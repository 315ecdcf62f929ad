"""``manage.py similar IMAGE [--json] [-k 10] [--sheet out.png]``: the nearest catalog products."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from PIL import Image

from catalog.models import Product
from catalog.selectors.photo_search import products_search_by_image
from catalog.vectors import image_limits
from similarity import ImageRejected, SheetRow, SheetTile, draw_sheet, load_image

_PLACEHOLDER = (225, 225, 225)


def _k(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"k must be between 1 and 100, got {value}")
    return value


def _product_picture(product: Product) -> Image.Image | None:
    """The product's stored image, decoded, or None if it is missing or unusable."""
    try:
        with product.image.storage.open(product.image.name or "", "rb") as handle:
            data = handle.read()
        return load_image(data, limits=image_limits())
    except (OSError, ImageRejected, ValueError):
        return None


class Command(BaseCommand):
    help = "Print the catalog products nearest to an image file (search by photo, no Celery needed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("image", type=Path, help="a garment image (JPEG, PNG, WebP or GIF)")
        parser.add_argument("-k", type=_k, default=10, help="how many neighbours (default 10)")
        parser.add_argument("--json", action="store_true",
                            help="print a JSON list of {id, name, category, distance}")
        parser.add_argument("--sheet", type=Path, default=None,
                            help="also write a picture of the query beside its neighbours (PNG)")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["image"]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            hits = products_search_by_image(image_bytes=data, k=options["k"])
        except ImageRejected as exc:
            raise CommandError(f"{path} rejected ({exc.reason}): {exc.message}") from exc

        if options["json"]:
            payload = [
                {"id": p.pk, "name": p.name, "category": p.category, "distance": round(d, 6)}
                for p, d in hits
            ]
            self.stdout.write(json.dumps(payload, indent=2, ensure_ascii=False))
        else:
            self._table(hits)
        if options["sheet"] is not None:
            self._sheet(options["sheet"], path, data, hits)

    def _table(self, hits: list[tuple[Product, float]]) -> None:
        if not hits:
            self.stdout.write("no ready products in the catalog yet")
            return
        rows = [
            (str(rank), f"{dist:.4f}", str(p.pk), p.category, p.name)
            for rank, (p, dist) in enumerate(hits, start=1)
        ]
        header = ("rank", "distance", "id", "category", "name")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        right = (True, True, True, False, False)

        def fmt(row: tuple[str, ...]) -> str:
            cells = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right, strict=True)]
            return "  ".join(cells).rstrip()

        self.stdout.write(fmt(header))
        for row in rows:
            self.stdout.write(fmt(row))

    def _sheet(self, out: Path, source: Path, data: bytes, hits: list[tuple[Product, float]]) -> None:
        query = load_image(data, limits=image_limits())
        tiles = []
        for rank, (product, dist) in enumerate(hits, start=1):
            picture = _product_picture(product)
            caption = f"#{rank} {product.category}\nd = {dist:.3f}"
            if picture is None:
                picture = Image.new("RGB", (64, 64), _PLACEHOLDER)
                caption += " (no image)"
            tiles.append(SheetTile(picture, caption))
        sheet = draw_sheet([SheetRow(query, tiles, caption=f"query\n{source.name}")])
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            sheet.save(out, format="PNG")
        except OSError as exc:
            raise CommandError(f"cannot write the sheet to {out}: {exc}") from exc
        self.stderr.write(f"sheet written to {out} ({sheet.width}x{sheet.height})")
