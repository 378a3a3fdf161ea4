"""The tabular recipe (configs/tabular_best.yaml: periodic embeddings of the numbers, TabM's ensemble) used as a user
uses a model: trained from the config on a real table, explained per row, exported to ONNX, with the data's own
categories embedded. The recipe's accuracy at size is a slow test (tests/e2e/test_tabular_best.py) and
benchmarks/tables.py."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.cli import CONFIGS, fit_for_fixture, in_process, quiet_trainer

from lit_nets.core.data.samples import write_csv_sample
from lit_nets.data import CSVDataModule
from lit_nets.deploy.inference import load_classifier


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory) -> tuple[Path, Path, str]:
    """configs/tabular_best.yaml on breast cancer with a column of seeded noise, a binary (one logit) head, 12 epochs:
    (folder, best checkpoint, what fit printed)."""
    work = tmp_path_factory.mktemp("recipe")
    cancer = pd.read_csv(write_csv_sample("breast_cancer", work / "cancer.csv"))
    cancer.insert(0, "noise", np.random.default_rng(0).normal(size=len(cancer)))
    cancer.to_csv(work / "noisy.csv", index=False)
    cancer.drop(columns="diagnosis").sample(60, random_state=0).to_csv(work / "rows.csv", index=False)
    best, printed = fit_for_fixture(
        work,
        "--config",
        str(CONFIGS / "tabular_best.yaml"),
        "--data.path",
        "noisy.csv",
        "--data.target",
        "diagnosis",
        "--data.sample",
        "null",
        "--model.init_args.loss",
        "bce",
        "--model.init_args.ensemble",
        "8",
        "--trainer.max_epochs",
        "12",
        "--trainer.enable_progress_bar",
        "false",
    )
    return work, best, printed


def test_the_recipe_learns_breast_cancer_as_one_classifier(recipe_run) -> None:
    _, best, printed = recipe_run
    accuracy = float(re.search(r"Test \(best\):  test/acc ([\d.]+)", printed).group(1))
    assert accuracy >= 0.94, printed[-1500:]  # the majority class is 0.63
    model = load_classifier(best)
    assert type(model.net).__name__ == "TabularEnsemble" and model.net.k == 8 and model.net.numeric_width == 16
    assert not model.training and model(torch.zeros(3, *model.input_shape)).shape == (3, 1)  # one logit, averaged


def test_explained_rows_add_up_and_the_noise_column_ranks_low(recipe_run, monkeypatch, capfd) -> None:
    work, best, _ = recipe_run
    proc = in_process(
        "explain", "--ckpt_path", str(best), "--rows", "rows.csv", "--out", "explain", cwd=work,
        monkeypatch=monkeypatch, capfd=capfd,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(work / "explain" / "rows.attributions.csv")
    features = list(pd.read_csv(work / "rows.csv").columns)
    assert set(features) <= set(table.columns) and len(table) == 60
    # each number's 16 embedding dimensions summed back to it: the columns add up to the explained logit
    gap = (table["baseline"] + table[features].sum(axis=1) - table["output"]).abs()
    assert gap.max() <= 0.02 * max(1.0, float((table["output"] - table["baseline"]).abs().max()))
    importance = pd.read_csv(work / "explain" / "importance.csv")
    ranked = list(importance["column"])  # most important first
    assert ranked.index("noise") >= 15, ranked


def test_the_onnx_file_answers_as_the_checkpoint(recipe_run, monkeypatch, capfd) -> None:
    import onnxruntime

    work, best, _ = recipe_run
    proc = in_process(
        "export", "--ckpt_path", str(best), "--format", "onnx", "--out", "export", cwd=work,
        monkeypatch=monkeypatch, capfd=capfd,
    )  # fmt: skip
    assert proc.returncode == 0 and "same top-1: True" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    model = load_classifier(best)
    x = torch.randn(64, *model.input_shape) * torch.tensor(model.hparams.std) + torch.tensor(model.hparams.mean)
    session = onnxruntime.InferenceSession(str(work / "export" / f"{best.stem}.onnx"))
    with torch.no_grad():
        logits = model(x).numpy()
    # export's tolerance: onnxruntime's sine and cosine of the embeddings' large angles differ from torch's a little
    assert (np.abs(session.run(None, {"x": x.numpy()})[0] - logits) / np.maximum(np.abs(logits), 1)).max() < 1e-3


def test_embedded_and_one_hot_columns_enter_the_ensemble(tmp_path: Path) -> None:
    """InstEval ratings, lecturer (a few hundred ids) embedded and the department one-hot, next to periodic numbers:
    the ensemble beats the majority, and every attribution lands on a column of the file."""
    from lightning.pytorch import seed_everything

    from lit_nets.core.data.schema import read_schema
    from lit_nets.deploy.attributions import integrated_gradients
    from lit_nets.models import MLPClassifier

    full = pd.read_csv(write_csv_sample("insteval", tmp_path / "insteval.csv")).drop(columns="student")
    full.sample(8000, random_state=0).to_csv(tmp_path / "ratings.csv", index=False)
    dm = CSVDataModule(
        path=str(tmp_path / "ratings.csv"), target="rating", categorical=["lecturer", "dept"],
        categorical_encoding="auto", onehot_max=20, batch_size=128,
    )  # fmt: skip
    dm.setup("fit")
    seed_everything(0)
    links = ("num_classes", "input_shape", "mean", "std", "class_names", "schema")
    model = MLPClassifier(
        **{k: getattr(dm, k) for k in links}, hidden=[64, 64], numeric_embedding="periodic", ensemble=4, lr=0.002
    )
    schema = read_schema(model.schema)
    assert [c["name"] for c in schema.embedded] == ["lecturer"] and [c["name"] for c in schema.onehot] == ["dept"]
    quiet_trainer(max_epochs=4).fit(model, dm)
    x_val, y_val = dm.splits.val
    model.eval()
    with torch.no_grad():
        accuracy = float((model(x_val).argmax(1) == y_val).float().mean())
    majority = float(torch.bincount(y_val).max()) / len(y_val)
    assert accuracy > majority + 0.01, (accuracy, majority)
    found = integrated_gradients(model, x_val[:50])
    assert set(found.columns) == {"studage", "lectage", "service", "lecturer", "dept"}
    total = found.baseline + found.values.sum(axis=1)
    assert np.abs(total - found.output).max() <= 0.02 * max(1.0, float(np.abs(found.output - found.baseline).max()))
