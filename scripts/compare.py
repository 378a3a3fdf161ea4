"""Train the CNN in several variants on the same data and print a table of accuracy and time per epoch.

    python scripts/compare.py --config configs/png_folder.yaml --seeds 1 2 3
    python scripts/compare.py --config configs/cnn.yaml --variants relu elu relu+bn --epochs 3
    python scripts/compare.py --config configs/png_folder.yaml -- --data.augment true   # extra CLI arguments

Each run goes through the same code path as ``python -m lit_nets fit`` (in this process), with the variant's
overrides on top of the config; the run folders land under lightning_logs/compare/. The table shows the mean
and spread over the seeds of the best val/acc, the test accuracy of the best checkpoint, and the seconds per
epoch (training plus validation, measured by Lightning's Timer callback).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

VARIANTS: dict[str, list[str]] = {
    "relu": [],
    "leaky_relu": ["--model.activation", "leaky_relu"],
    "elu": ["--model.activation", "elu"],
    "gelu": ["--model.activation", "gelu"],
    "relu+bn": ["--model.batch_norm", "true"],
    "relu+dropout": ["--model.dropout", "0.25"],
    "relu+bn+dropout": ["--model.batch_norm", "true", "--model.dropout", "0.25"],
}


def run(config: str, overrides: list[str], seed: int, epochs: int, extra: list[str]) -> dict[str, float]:
    from lightning.pytorch.callbacks import Timer

    from lit_nets.core.logs import setup_logging
    from lit_nets.train.callbacks import main_checkpoint
    from lit_nets.train.cli import LitNetsCLI

    setup_logging()
    args = [
        "--config",
        config,
        *overrides,
        "--seed_everything",
        str(seed),
        "--data.seed",
        str(seed),
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.logger.init_args.name",
        "lightning_logs/compare",
        *extra,
    ]
    cli = LitNetsCLI(args=args, run=False)  # builds model, data and trainer as `fit` does; we run them
    timer = Timer()  # added here: jsonargparse cannot write Timer's enum default into the saved config
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    # read now: testing restores the callbacks' state from the best checkpoint, the Timer's elapsed time with it,
    # which it then adds to (the table showed about twice the real seconds per epoch)
    seconds = timer.time_elapsed("train")
    checkpoint = main_checkpoint(cli.trainer)  # the best by val/acc (the run also has a LastCheckpoint)
    best = checkpoint.best_model_score
    (test,) = cli.trainer.test(
        cli.model, datamodule=cli.datamodule, ckpt_path=checkpoint.best_model_path, verbose=False
    )
    return {
        "val_acc": float(best) if best is not None else float("nan"),
        "test_acc": test["test/acc"],
        "sec_per_epoch": seconds / max(1, cli.trainer.current_epoch),
    }


def spread(values: list[float], digits: int) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/png_folder.yaml", help="the experiment's config")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42], help="one run per seed and variant")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="lightning_logs/compare/results.csv", help="CSV of every run")
    parser.add_argument("extra", nargs="*", help="after --: more CLI arguments for every run")
    args = parser.parse_args(argv)
    sys.argv = sys.argv[:1]  # the CLI runs get their arguments explicitly

    rows = []
    for name in args.variants:
        for seed in args.seeds:
            print(f"--- {name}, seed {seed}", file=sys.stderr, flush=True)
            rows.append(
                {"variant": name, "seed": seed, **run(args.config, VARIANTS[name], seed, args.epochs, args.extra)}
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    print(f"\n{args.config}, {args.epochs} epochs, seeds {' '.join(map(str, args.seeds))} (mean ± std over seeds)\n")
    print("| variant | best val/acc | test/acc | s/epoch |")
    print("| --- | --- | --- | --- |")
    for name in args.variants:
        mine = [r for r in rows if r["variant"] == name]
        cells = [spread([r[k] for r in mine], d) for k, d in (("val_acc", 4), ("test_acc", 4), ("sec_per_epoch", 2))]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nEvery run: {out}")
    return rows


if __name__ == "__main__":
    main()
