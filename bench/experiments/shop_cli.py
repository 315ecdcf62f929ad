"""The command line the shop-photo experiments share: ``[--quick] [--seed N] [--json rows.json]``,
the result printed as a markdown table."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from bench.experiments.shop_pictures import FULL, QUICK, Sizes


def shop_main(doc: str | None, run: Callable[..., dict], table: Callable[[dict], str],
              argv: list[str] | None = None) -> int:
    """Parse the shared options, ``run(sizes, seed=...)``, print ``table(result)``, write the JSON."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40/20 garments per class, 100 re-shots, 1 view")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)
    sizes: Sizes = QUICK if args.quick else FULL
    result = run(sizes, seed=args.seed)
    print(table(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0
