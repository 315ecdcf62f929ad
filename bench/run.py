"""`make bench`: run every benchmark in one process and print one markdown table.

    python -m bench.run [--quick] [--write-readme]

With --write-readme the table replaces the block between the bench markers in README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    api_load_bench,
    category_bench,
    inference_bench,
    int8_bench,
    manifest_bench,
    matrix_bench,
    pipeline_bench,
    rules_bench,
    scale_bench,
    search_bench,
)
from bench.common import REPO, table

START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def all_rows(quick: bool) -> list[dict]:
    """Every benchmark's rows, in the table's order."""
    return (inference_bench.run(quick) + int8_bench.run(quick, log=False)
            + matrix_bench.run(quick) + search_bench.run(quick)
            + pipeline_bench.run_isolated(quick) + manifest_bench.run(quick)
            + api_load_bench.run(quick) + scale_bench.run(quick) + category_bench.run(quick)
            # last: its catalog half sets Django up in this process
            + rules_bench.run(quick))


def write_readme(readme: Path, text: str) -> None:
    """Replace the block between the bench markers in ``readme`` with ``text``."""
    content = readme.read_text()
    before, _, rest = content.partition(START)
    _, _, after = rest.partition(END)
    readme.write_text(f"{before}{START}\n{text}\n{END}{after}")
    print(f"\nwrote the table into {readme}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    rows = all_rows(args.quick)
    cpu = platform.processor() or platform.machine()
    header = (f"Measured {datetime.now(UTC):%Y-%m-%d} on {cpu}, "
              f"{os.cpu_count()} cores; medians of repeated runs.")
    text = f"{header}\n\n{table(rows)}"
    print(text)
    if args.write_readme:
        write_readme(REPO / "README.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
