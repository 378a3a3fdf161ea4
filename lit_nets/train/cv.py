"""``python -m lit_nets cv``: k-fold cross-validation of any config, each fold a normal ``fit`` run.

    python -m lit_nets cv --config configs/mlp.yaml --folds 5
    python -m lit_nets cv --config configs/png_folder.yaml --folds 3 --repeats 2 --trainer.max_epochs 3

Every fold is ``fit`` with ``--data.fold k --data.folds K`` (the data module's own fold split: stratified, seeded,
the test split untouched, statistics fitted on the fold's training part) in ``lightning_logs/cv/<name>/fold_k``
(``repeat_r/fold_k`` with ``--repeats``), so TensorBoard shows the folds side by side and each is a run like any
other (checkpoints, figures, the test of its best checkpoint). Afterwards the best checkpoint of each fold is
validated on its fold; the table of every validation and test metric per fold with mean ± std is printed and saved
as ``results.csv``, and ``oof_predictions.csv`` holds the out-of-fold prediction of every example that the folds
divide (each validated once per repeat, by the model that did not train on it). Repeats draw new folds from the data
module's ``seed`` + the repeat number. Nothing is chosen on the test split.

Lightning has no cross-validation loop (its issues #839 and #4287 ask for one); this runs its Trainer once per fold.
"""

from __future__ import annotations

import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lit_nets.core.errors import UserError
from lit_nets.core.models.tasks import kind_in_config
from lit_nets.core.options import command_options
from lit_nets.train import runs

HELP_EPILOG = "Every other option is fit's (--config, --trainer.*, --model.*, --data.*): see fit --help."


@dataclass
class CVOptions:
    """cv's own options (every other one is fit's, passed on to every fold).

    Args:
        folds: how many folds.
        repeats: repeated k-fold: rounds of new folds.
        name: the folder under lightning_logs/cv/ (default: the last config's name).
    """

    folds: int = 5
    repeats: int = 1
    name: str | None = None


def parse(argv: list[str], prog: str) -> tuple[CVOptions, list[str]]:
    """cv's own options (folds, repeats, name), checked, and the rest: fit's options, passed on to every fold."""
    about = __doc__.split("\n\n")[0].replace("``", "")
    options, rest = command_options(CVOptions, argv, f"{prog} cv", about, HELP_EPILOG)
    if options.folds < 2:
        raise UserError(f"cv --folds must be 2 or more (one fold leaves nothing to train on), got {options.folds}")
    if options.repeats < 1:
        raise UserError(f"cv --repeats must be 1 or more, got {options.repeats}")
    runs.refuse_folds_and_resuming(rest, "cv", "sets the folds itself (--folds) and starts every fold from scratch")
    if options.name is not None:
        runs.check_name(options.name, "cv --name")
    options.name = options.name or runs.config_name(rest)
    return options, rest


def data_seed(rest: list[str]) -> int:
    """The data module's seed as the configs and the command line give it."""
    return int(runs.config_of(rest).get("data", {}).get("init_args", {}).get("seed", 42))


def run_fold(
    rest: list[str],
    fold: int,
    folds: int,
    seed: int | None,
    logs: str,
    version: str,
    callbacks: list | None = None,
    tracked: list[str] | None = None,
) -> dict[str, Any]:
    """One fold: ``fit`` as a user runs it (in ``logs/version`` under the logger's folder, ``callbacks`` added),
    then its best checkpoint validated on its fold and its out-of-fold predictions. ``tracked``: its MLflow group's
    arguments (:class:`lit_nets.train.callbacks.tracking.Group`)."""
    from lit_nets.core.logs import quiet_warnings
    from lit_nets.core.models import heads
    from lit_nets.train.callbacks import label_table, prediction_table, value_table

    args = [
        *rest,
        "--data.init_args.fold",
        str(fold),
        "--data.init_args.folds",
        str(folds),
        "--trainer.logger.init_args.name",
        logs,
        "--trainer.logger.init_args.version",
        version,
    ]
    if seed is not None:
        args += ["--data.init_args.seed", str(seed)]
    cli = runs.fit(args + list(tracked or []), callbacks)
    trainer, model, data = cli.trainer, cli.model, cli.datamodule
    if trainer.interrupted:
        raise UserError(f"cv: fold {fold} was stopped; its run is in {trainer.log_dir}")
    tested = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    best = trainer.checkpoint_callback.best_model_path
    if not best:
        raise UserError(f"cv: fold {fold} saved no best checkpoint (is the checkpoint's monitor logged?)")
    with quiet_warnings():
        (validated,) = trainer.validate(model, datamodule=data, ckpt_path=best, verbose=False)
    model.eval()
    probs, labels = [], []
    value = model.task.value
    with torch.no_grad():  # the model holds the best weights now (validate loaded them)
        for batch in data.val_dataloader():
            x, *rest = batch if isinstance(batch, list | tuple) else (batch,)
            out = model(x.to(model.device))
            probs.append((heads.values(model, out) if value else model.probabilities(out)).float().cpu())
            labels += [rest[0].cpu()] if rest and (rest[0].dim() == 1 or model.task.labels) else []
    probs = torch.cat(probs)
    targets = torch.cat(labels) if labels and sum(len(y) for y in labels) == len(probs) else None
    splits = getattr(data, "splits", None)  # lit_nets' data modules name their validation rows
    ids = (splits.val_ids if splits is not None else None) or list(range(len(probs)))
    if value:
        oof = value_table(probs, ids, targets)
    elif model.task.labels:
        oof = label_table(probs, model.decide(probs), list(model.class_names), ids, targets)
    else:
        oof = prediction_table(probs, model.decide(probs), list(model.class_names), ids, targets)
    metrics = {k: float(v) for k, v in validated.items()} | tested
    return {"fold": fold, "run": str(trainer.log_dir), "best": best, "metrics": metrics, "oof": oof}


def main(argv: list[str], prog: str) -> None:
    """``python -m lit_nets cv ARGV``: every fold of every repeat, then the table and the two CSV files."""
    import pandas as pd

    from lit_nets.train.callbacks.tracking import Group

    options, rest = parse(argv, prog)
    config = runs.config_of(rest)
    data = config.get("data") or {}
    if not {"fold", "folds"} <= set(data.get("init_args") or {}):
        raise UserError(
            f"cv: {data.get('class_path')} takes no fold and folds arguments: cross-validation needs a data module "
            "that validates on fold k of K (docs/extend.md#your-own-data)"
        )
    options.name = unused_name(runs.logs_folder(config, "lightning_logs/cv"), options.name)
    how = {
        "classes": "stratified by class",
        "value": "stratified by tenths of the target's values (quantiles)",
        "labels": "plain (several labels: label sets are too many to stratify by)",
    }[kind_in_config(data.get("init_args"))]
    print(f"cv: {options.folds} folds, {how}, seeded", file=sys.stderr, flush=True)
    seed = data_seed(rest) if options.repeats > 1 else None
    group = Group(config, f"cv/{options.name}", {"lit_nets.cv": options.name})
    results, oof = [], []
    for repeat in range(options.repeats):
        for fold in range(options.folds):
            version = f"repeat_{repeat}/fold_{fold}" if options.repeats > 1 else f"fold_{fold}"
            print(
                f"cv: fold {fold + 1} of {options.folds}"
                + (f", repeat {repeat + 1} of {options.repeats}" if options.repeats > 1 else ""),
                file=sys.stderr,
                flush=True,
            )
            seeded = None if seed is None else seed + repeat
            logs = f"lightning_logs/cv/{options.name}"
            tracked = group.args(f"cv/{options.name}/{version}", fold=fold, repeat=repeat)
            done = run_fold(rest, fold, options.folds, seeded, logs, version, tracked=tracked)
            results.append({"repeat": repeat, "fold": fold, **done["metrics"], "run": done["run"]})
            oof.append(pd.DataFrame({"repeat": repeat, "fold": fold, **done["oof"]}))
    folder = Path(results[0]["run"]).parent.parent if options.repeats > 1 else Path(results[0]["run"]).parent
    table = summary(results)
    table.to_csv(folder / "results.csv", index=False)
    pd.concat(oof).to_csv(folder / "oof_predictions.csv", index=False)
    print_table(table, options, folder, sum(len(f) for f in oof))
    mean, std = table.iloc[-2], table.iloc[-1]
    metrics = [c for c in table.columns if c.startswith(("val/", "test/"))]
    group.finish(
        {f"{m}_mean": mean[m] for m in metrics} | {f"{m}_std": std[m] for m in metrics},
        [folder / "results.csv", folder / "oof_predictions.csv"],
    )


def unused_name(folder: Path, name: str) -> str:
    """``name``, or ``name_2``, ``name_3``, ... when ``folder/name`` holds an earlier cv run: a rerun never writes into
    another run's folds, results or out-of-fold predictions."""
    taken = lambda n: (folder / n).exists() and any((folder / n).iterdir())  # noqa: E731
    if not taken(name):
        return name
    new = next(f"{name}_{i}" for i in range(2, 10_000) if not taken(f"{name}_{i}"))
    print(
        f"cv: {folder / name} holds an earlier run; this one goes to {folder / new} (--name to choose)",
        file=sys.stderr,
        flush=True,
    )
    return new


def summary(results: list[dict[str, Any]]) -> Any:
    """A row per fold, then the mean and the standard deviation (sample, n-1) of every metric."""
    import pandas as pd

    frame = pd.DataFrame(results)
    metrics = sorted(c for c in frame.columns if c.startswith(("val/", "test/")))
    frame = frame[["repeat", "fold", *metrics, "run"]]
    mean = {"repeat": "mean", "fold": "", "run": ""} | {m: statistics.fmean(frame[m]) for m in metrics}
    std = {"repeat": "std", "fold": "", "run": ""} | {m: statistics.stdev(frame[m]) for m in metrics}
    return pd.concat([frame.astype({"repeat": object, "fold": object}), pd.DataFrame([mean, std])], ignore_index=True)


def print_table(table: Any, options: CVOptions, folder: Path, oof_rows: int) -> None:
    """The table as Markdown (a row per fold, then mean ± std) and where the files are."""
    rows = table[~table["repeat"].isin(["mean", "std"])]
    metrics = [c for c in table.columns if c.startswith(("val/", "test/"))]
    mean, std = table.iloc[-2], table.iloc[-1]
    rounds = f" x {options.repeats} repeats" if options.repeats > 1 else ""
    print(
        f"\nCross-validation: {options.folds} folds{rounds} (validation: each fold's best checkpoint on its fold; "
        "test: the same test split for every fold)"
    )
    print("| " + " | ".join(["fold", *metrics]) + " |")
    print("|" + " --- |" * (len(metrics) + 1))
    for _, row in rows.iterrows():
        label = f"{row['repeat']}.{row['fold']}" if options.repeats > 1 else str(row["fold"])
        print("| " + " | ".join([label, *(f"{row[m]:.4f}" for m in metrics)]) + " |")
    print("| mean ± std | " + " | ".join(f"{mean[m]:.4f} ± {std[m]:.4f}" for m in metrics) + " |")
    print(f"Folds:        {folder}/  (view: tensorboard --logdir {folder})")
    print(f"Results:      {folder / 'results.csv'}")
    print(f"Out-of-fold:  {folder / 'oof_predictions.csv'} ({oof_rows:,} rows)")
    if any(math.isnan(mean[m]) for m in metrics):
        print("Some folds did not log every metric (NaN in the table).")
