"""`make bench`: run every benchmark in one process and print one markdown table.

With --write-readme the table replaces the block between the bench markers in README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import (  # noqa: E402
    inference_bench,
    int8_bench,
    matrix_bench,
    pipeline_bench,
    scale_bench,
    search_bench,
)

START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def table(rows: list[dict]) -> str:
    lines = ["| benchmark | figure | ratio (same run) |", "|---|---|---|"]
    lines += [f"| {r['benchmark']} | {r['figure']} | {r['ratio']} |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes")
    parser.add_argument("--write-readme", action="store_true")
    args = parser.parse_args()
    rows = (inference_bench.run(args.quick) + int8_bench.run(args.quick, log=False)
            + matrix_bench.run(args.quick) + search_bench.run(args.quick)
            + pipeline_bench.run_isolated(args.quick) + scale_bench.run(args.quick))
    cpu = platform.processor() or platform.machine()
    header = (f"Measured {datetime.now(UTC):%Y-%m-%d} on {cpu}, "
              f"{os.cpu_count()} cores; medians of repeated runs.")
    text = f"{header}\n\n{table(rows)}"
    print(text)
    if args.write_readme:
        readme = ROOT / "README.md"
        content = readme.read_text()
        before, _, rest = content.partition(START)
        _, _, after = rest.partition(END)
        readme.write_text(f"{before}{START}\n{text}\n{END}{after}")
        print(f"\nwrote the table into {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
