"""``manage.py evaluate_similarity [--json] [--folds N | --no-held-out]``: precision@10 and
mAP@10 of the stored neighbours (in-sample) and of k-fold held-out lists."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from catalog.selectors.retrieval_quality import DEFAULT_FOLDS, similarity_quality, similarity_quality_heldout
from similarity import QualityReport

_DIGITS = 6
IN_SAMPLE = ("in-sample: the stored neighbour lists, scored against the categories the projection "
             "was fitted on (optimistic)")
HELD_OUT = ("held-out: {folds}-fold, the projection refitted without the fold it scores, the "
            "fold's products ranked against the whole catalog")


class Command(BaseCommand):
    help = (
        "Score the catalog's neighbour lists against the products' own categories: "
        "precision@10 and mean average precision@10, per category and overall; in-sample "
        "(the stored lists) and held-out (k-fold: the projection refitted without each fold)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true",
                            help="print one JSON object: precision_at_10, map_at_10, per_category, n "
                                 "(in-sample, as before), evaluation, and held_out {..., folds}")
        parser.add_argument("--folds", type=int, default=DEFAULT_FOLDS,
                            help=f"folds of the held-out figure (default {DEFAULT_FOLDS})")
        parser.add_argument("--no-held-out", action="store_true",
                            help="only the in-sample figure (the held-out one refits the projection "
                                 "once per fold)")

    def handle(self, *args: Any, **options: Any) -> None:
        report = similarity_quality()
        folds = int(options["folds"])
        held = None if options["no_held_out"] else similarity_quality_heldout(folds=folds)
        if options["json"]:
            out = {**report.as_dict(digits=_DIGITS), "evaluation": "in-sample"}
            if held is not None:
                out["held_out"] = {**held.as_dict(digits=_DIGITS), "folds": folds,
                                   "evaluation": "held-out k-fold"}
            self.stdout.write(json.dumps(out, indent=2, ensure_ascii=False))
            return
        self._table(IN_SAMPLE, report)
        if held is not None:
            self.stdout.write("")
            self._table(HELD_OUT.format(folds=folds), held)

    def _table(self, title: str, report: QualityReport) -> None:
        self.stdout.write(title)
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
        for row in rows:
            self.stdout.write(fmt(row))
