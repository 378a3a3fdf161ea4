"""How does reading a CSV file grow with its rows? What ``fit`` does with a table before training, phase by phase
(read and split it, fit the schema: which columns are numbers, medians, categories; encode every split as tensors),
each size in a fresh process: the phases' seconds, the time per million rows (flat when nothing grows faster than the
rows) and the process's peak memory.

    python benchmarks/csv_loading.py                      # 1,000,000 rows x 50 columns: a quarter, half and all
    python benchmarks/csv_loading.py --rows 200000 --columns 20

The table: :func:`harness.make_table`, a practitioner's export (numbers on scales from 0.01 to 10,000 with 5%
missing, 4 text columns, a 3-class label), written once per size under the temporary folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from harness import CATEGORIES, make_table, print_table, worker_result


def run_load(csv: str) -> dict[str, Any]:
    """What ``fit`` does with the CSV file before training, phase by phase: read it, split it and fit the schema
    (which columns are numbers, medians, categories), encode every split as tensors."""
    from lit_nets.data import CSVDataModule

    start = time.perf_counter()
    dm = CSVDataModule(path=csv, target="label", batch_size=1024)
    frames = dm.frames()
    read = time.perf_counter()
    schema = dm.fitted_schema
    fitted = time.perf_counter()
    dm.setup("fit")
    encoded = time.perf_counter()
    x = dm.splits.train[0]
    return {
        "rows": len(frames["whole"]),
        "inputs": schema.input_size,
        "read_s": read - start,
        "schema_s": fitted - read,
        "encode_s": encoded - fitted,
        "total_s": encoded - start,
        "train_mb": x.numel() * x.element_size() / 2**20,
        "file_mb": Path(csv).stat().st_size / 2**20,
    }


HEADERS = ["rows", "file MB", "read + split s", "schema s", "encode s", "total s", "s per 1M rows", "peak MB"]
HEADERS.append("train MB")


def csv_loading(rows_in_all: int, columns: int) -> list[dict[str, Any]]:
    """:func:`run_load` in a fresh process at a quarter, half and all of ``rows_in_all``: the phases' times, the time
    per million rows and the process's peak memory; the table printed."""
    rows = []
    for n in (rows_in_all // 4, rows_in_all // 2, rows_in_all):
        path = make_table(n, columns)
        result, _, peak = worker_result(__file__, ["--worker", str(path)])
        result["peak_mb"] = peak
        result["s_per_million_rows"] = result["total_s"] / (n / 1e6)
        rows.append(result)
    numeric = columns - len(CATEGORIES) - 1
    print_table(
        [
            "rows",
            "file MB",
            "read + split s",
            "schema s",
            "encode s",
            "total s",
            "s per 1M rows",
            "peak MB",
            "train MB",
        ],
        [
            [
                f"{r['rows']:,}",
                f"{r['file_mb']:,.0f}",
                f"{r['read_s']:.1f}",
                f"{r['schema_s']:.1f}",
                f"{r['encode_s']:.1f}",
                f"{r['total_s']:.1f}",
                f"{r['s_per_million_rows']:.1f}",
                f"{r['peak_mb']:,.0f}",
                f"{r['train_mb']:,.0f}",
            ]
            for r in rows
        ],
        f"CSV loading ({columns} columns: {numeric} numeric with 5% missing, {len(CATEGORIES)} text, the label), "
        "each size in a fresh process",
    )
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Time the loading at the three sizes (or, as a worker, one file), print the table, return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="the largest table (default 1,000,000)")
    parser.add_argument("--columns", type=int, default=50, help="columns of the tables (default 50)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        Path(args.out).write_text(json.dumps(run_load(args.worker)))
        return []
    return csv_loading(args.rows, args.columns)


if __name__ == "__main__":
    main()
