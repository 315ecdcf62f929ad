"""``manage.py evaluate_similarity [--json]``: precision@10 and mAP@10 of the stored neighbours."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from catalog.selectors_quality import similarity_quality

_DIGITS = 6


class Command(BaseCommand):
    help = (
        "Score the catalog's stored neighbour lists against the products' own categories: "
        "precision@10 and mean average precision@10, per category and overall."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true",
                            help="print one JSON object: precision_at_10, map_at_10, per_category, n")

    def handle(self, *args: Any, **options: Any) -> None:
        report = similarity_quality()
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(digits=_DIGITS), indent=2, ensure_ascii=False))
            return
        if report.n == 0:
            self.stdout.write("nothing to score: no ready product shares its category with another")
            return
        rows = [(str(cat), str(s.n), f"{s.precision:.3f}", f"{s.map:.3f}")
                for cat, s in report.per_category.items()]
        rows.append(("overall", str(report.n), f"{report.precision:.3f}", f"{report.map:.3f}"))
        header = ("category", "n", f"P@{report.k}", f"mAP@{report.k}")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

        def fmt(row: tuple[str, ...]) -> str:
            return "  ".join([row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                                      strict=True))])

        self.stdout.write(fmt(header))
        for row in rows[:-1]:
            self.stdout.write(fmt(row))
        self.stdout.write(fmt(rows[-1]))
