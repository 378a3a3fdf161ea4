"""Our MLP (one-hot and embeddings) and the tabular recipe (configs/tabular_best.yaml) against scikit-learn's gradient
boosting and logistic regression, on the same folds of every tabular data set lit_nets ships; the tables of
docs/tables.md.

    python benchmarks/tables.py                       # every data set, 5 folds (about an hour, 2 cores)
    python benchmarks/tables.py --sets diamonds insteval --folds 3 --out /tmp/cmp
    python benchmarks/tables.py --sets wine autompg --folds 3 --no-recipe
    python benchmarks/tables.py --sets adult --folds 3 --out /tmp/cmp      # ../shared/data/adult: the published split
    python benchmarks/tables.py --sets diamonds insteval adult --folds 3 --no-mlp   # the recipe against scikit-learn

For each data set and fold, the MLP is ``python -m lit_nets cv --config ... --folds K`` exactly as a user runs it
(early stopping, checkpoints, figures, the test of each fold's best checkpoint), once per categorical encoding; the
scikit-learn models are fitted on the very training rows of each fold (the data module's own fold split, built from
the same config) and scored on the fold's validation rows and on the shared test split. The columns that lit_nets
treats as categories are the categorical ones for scikit-learn too:

- ``HistGradientBoostingClassifier``: numbers as they are (it handles missing values), categories of up to 255
  values as its native categorical features, more than that through scikit-learn's cross-fitted ``TargetEncoder``
  (its native support stops at 255 categories);
- ``LogisticRegression`` (max_iter 5000): numbers median-imputed and standardised, categories one-hot
  (``handle_unknown="ignore"``).

Accuracy is the mean ± standard deviation over the folds; the wall time is per fold: for the MLP a whole ``fit``
process (start-up, data, training, the test), for scikit-learn the fit and both predictions. Writes
``comparison.csv`` (a row per data set, model and fold) and ``comparison.md`` (the table) under ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"  # UCI Adult's published files, where this repository sits beside them
SETS: dict[str, list[str]] = {  # the fit arguments of each data set: its config plus what differs
    "wine": ["--config", "configs/mlp.yaml"],
    "breast_cancer": ["--config", "configs/mlp_bce.yaml"],
    "autompg": [
        "--config",
        "configs/mlp.yaml",
        "--data.path",
        "data/autompg.csv",
        "--data.target",
        "origin",
        "--data.sample",
        "autompg",
    ],
    "insteval": ["--config", "configs/insteval.yaml"],
    "diamonds": ["--config", "configs/diamonds.yaml"],
    # UCI Adult on its published split (../shared/data/adult: folds of adult.data, the test on adult.test)
    "adult": [
        "--config",
        "configs/mlp.yaml",
        "--config",
        "configs/adult.yaml",
        f"--data.path={SHARED / 'adult' / 'adult.data'}",
        f"--data.test_path={SHARED / 'adult' / 'adult.test'}",
    ],
}
RECIPE = "configs/tabular_best.yaml"  # its model, trainer and stopping over each data set's own data section


def recipe_args(args: list[str], data: str, cwd: Path) -> list[str]:
    """The fit arguments of ``configs/tabular_best.yaml`` on this data set: the recipe's file with the data section
    that the data set's arguments give (stacked and merged by the CLI's own parser), written under ``cwd/recipe``."""
    import os

    import yaml

    from lit_nets.train import runs

    recipe = yaml.safe_load((REPO / RECIPE).read_text())
    os.chdir(cwd)  # the configs' relative paths are under cwd (main copies them there)
    given = runs.config_of(args)
    recipe["data"] = given["data"]
    steps = (given["model"].get("init_args") or {}).get("step_batch_size")
    if steps:  # the data set's batches are several optimiser steps (diamonds.yaml): the recipe takes the same steps
        recipe["model"]["init_args"]["step_batch_size"] = steps
    path = cwd / "recipe" / f"{data}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return ["--config", str(path.relative_to(cwd))]


def validation_auc(table: Any, classes: list[str]) -> float | None:
    """The area under the ROC curve of the out-of-fold (validation) predictions of a two-class table."""
    from sklearn.metrics import roc_auc_score

    if len(classes) != 2:
        return None
    return float(roc_auc_score(table["true_label"].astype(str) == classes[1], table[f"prob_{classes[1]}"]))


def run_mlp(args: list[str], encoding: str, folds: int, name: str, cwd: Path) -> list[dict[str, Any]]:
    """``cv`` of the MLP with ``encoding``: a row per fold (validation and test accuracy, validation AUC of a
    two-class table, seconds per fold)."""
    import pandas as pd

    command = [
        sys.executable,
        "-m",
        "lit_nets",
        "cv",
        *args,
        "--folds",
        str(folds),
        "--name",
        name,
        "--data.categorical_encoding",
        encoding,
        "--trainer.enable_progress_bar",
        "false",
    ]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    folder = cwd / "lightning_logs" / "cv" / name
    table = pd.read_csv(folder / "results.csv")
    table = table[~table["repeat"].isin(["mean", "std"])]
    oof = pd.read_csv(folder / "oof_predictions.csv", dtype={"true_label": str, "label": str})
    classes = [c[5:] for c in oof.columns if c.startswith("prob_")]
    return [
        {
            "val_acc": float(r["val/acc"]),
            "test_acc": float(r["test/acc"]),
            "val_auc": validation_auc(oof[oof["fold"] == int(r["fold"])], classes),
            "seconds": seconds / folds,
        }
        for _, r in table.iterrows()
    ]


def sklearn_models(numeric: list[str], categorical: list[str], many: list[str]) -> dict[str, Any]:
    """The two scikit-learn pipelines for these columns (``many``: categorical columns of more than 255 values)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler, TargetEncoder

    few = [c for c in categorical if c not in many]
    boosted = ColumnTransformer(
        [
            ("numbers", "passthrough", numeric),
            (
                "few",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1),
                few,
            ),
            ("many", TargetEncoder(random_state=0), many),
        ],
        verbose_feature_names_out=False,
    )
    hgb = make_pipeline(
        boosted,
        HistGradientBoostingClassifier(
            categorical_features=[len(numeric) + i for i in range(len(few))] or None, random_state=0
        ),
    )
    linear = ColumnTransformer(
        [
            ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            ("categories", OneHotEncoder(handle_unknown="ignore"), categorical),
        ]
    )
    lr = make_pipeline(linear, LogisticRegression(max_iter=5000))
    return {"HistGradientBoosting": hgb, "LogisticRegression": lr}


def features(numeric: list[str], categorical: list[str], frame: Any) -> Any:
    """The feature columns of ``frame``; categories as text, a missing one a category, as lit_nets encodes them."""
    out = frame[numeric + categorical].copy()
    for c in categorical:
        out[c] = out[c].map(lambda v: "(missing)" if v != v else str(v)).astype(object)
    return out


def run_sklearn(args: list[str], folds: int, cwd: Path) -> tuple[dict[str, list[dict[str, Any]]], bool]:
    """Both scikit-learn models on each fold's training rows of the data module the config builds; and whether the
    data has categorical columns."""
    import os

    import numpy as np
    import pandas as pd

    from lit_nets.core.data.tabular import CSVDataModule
    from lit_nets.train import runs

    os.chdir(cwd)
    init = runs.config_of(args)["data"]["init_args"]
    rows: dict[str, list[dict[str, Any]]] = {}
    for fold in range(folds):
        dm = CSVDataModule(**{**init, "fold": fold, "folds": folds})
        frames, schema = dm.frames(), dm.fitted_schema
        numeric = [c["name"] for c in schema.numeric]
        categorical = [c["name"] for c in schema.categorical]
        many = [c["name"] for c in schema.categorical if len(schema.known_categories(c)) > 255]

        x_train, y_train = (
            features(numeric, categorical, frames["train"]),
            frames["train"][schema.target].astype(str).to_numpy(),
        )
        for name, model in sklearn_models(numeric, categorical, many).items():
            start = time.perf_counter()
            model.fit(x_train, y_train)
            val = float(
                np.mean(
                    model.predict(features(numeric, categorical, frames["val"]))
                    == frames["val"][schema.target].astype(str)
                )
            )
            test = float(
                np.mean(
                    model.predict(features(numeric, categorical, frames["test"]))
                    == frames["test"][schema.target].astype(str)
                )
            )
            seconds = time.perf_counter() - start
            auc = None
            if len(model.classes_) == 2:
                p = model.predict_proba(features(numeric, categorical, frames["val"]))[:, 1]
                classes = [str(c) for c in model.classes_]
                truth = frames["val"][schema.target].astype(str)
                auc = validation_auc(pd.DataFrame({"true_label": truth, f"prob_{classes[1]}": p}), classes)
            rows.setdefault(name, []).append({"val_acc": val, "test_acc": test, "val_auc": auc, "seconds": seconds})
    return rows, bool(categorical)


def mean_std(values: list[float]) -> str:
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def main() -> None:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=[s for s in SETS if s != "adult"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "comparison")
    parser.add_argument("--no-recipe", action="store_true", help=f"leave out {RECIPE}")
    parser.add_argument("--no-mlp", action="store_true", help="leave out the plain MLP (the recipe and scikit-learn's)")
    options = parser.parse_args()
    options.out.mkdir(parents=True, exist_ok=True)
    cwd = options.out.resolve()
    (cwd / "configs").mkdir(exist_ok=True)
    for config in (REPO / "configs").glob("*.yaml"):  # the configs' relative data paths land under --out
        (cwd / "configs" / config.name).write_text(config.read_text())
    records = []
    for data in options.sets:
        args = SETS[data]
        fitted, has_categories = run_sklearn(args, options.folds, cwd)
        results: dict[str, list[dict[str, Any]]] = {}
        encodings = ("onehot", "embedding") if has_categories else ("onehot",)  # without categories: the same model
        for encoding in () if options.no_mlp else encodings:
            label = f"MLP ({encoding})" if has_categories else "MLP"
            results[label] = run_mlp(args, encoding, options.folds, f"{data}_{encoding}", cwd)
            print(f"{data}: {label} done", file=sys.stderr, flush=True)
        if not options.no_recipe:
            results["recipe"] = run_mlp(recipe_args(args, data, cwd), "auto", options.folds, f"{data}_best", cwd)
            print(f"{data}: recipe done", file=sys.stderr, flush=True)
        results.update(fitted)
        for model, folds in results.items():
            records += [{"data": data, "model": model, "fold": i, **f} for i, f in enumerate(folds)]
    table = pd.DataFrame(records)
    table.to_csv(cwd / "comparison.csv", index=False)
    lines = [
        "| data | model | validation accuracy (folds) | test accuracy | validation AUC | s per fold |",
        "|---|---|---|---|---|---|",
    ]
    for (data, model), group in table.groupby(["data", "model"], sort=False):
        auc = mean_std(list(group["val_auc"])) if group["val_auc"].notna().all() else "-"
        lines.append(
            f"| {data} | {model} | {mean_std(list(group['val_acc']))} | {mean_std(list(group['test_acc']))} "
            f"| {auc} | {statistics.fmean(group['seconds']):.1f} |"
        )
    (cwd / "comparison.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
