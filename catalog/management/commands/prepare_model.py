"""``manage.py prepare_model [--precision fp32|int8]``: convert the model into LOOKALIKE_MODEL_DIR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from similarity import PRECISIONS, ModelIdentity, SimilarityError, ensure_model


class Command(BaseCommand):
    help = ("Convert the MobileNetV2 weights to LiteRT once (imports TensorFlow) and cache the model "
            "in LOOKALIKE_MODEL_DIR, where every worker and web process reads it.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--precision", choices=PRECISIONS, default=settings.LOOKALIKE_EMBED_PRECISION,
                            help="fp32 or int8 (default: the LOOKALIKE_EMBED_PRECISION setting)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            identity = ModelIdentity(precision=options["precision"])
            path = ensure_model(Path(settings.LOOKALIKE_MODEL_DIR), identity)
        except SimilarityError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"converted model ready: {path}")
