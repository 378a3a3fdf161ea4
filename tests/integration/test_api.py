"""lit_nets.api: the fit command from Python, and a predictor for rows and images held in memory that answers as
the predict command and the service do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.cli import CONFIGS, in_process

AUTOMPG = {"path": "data/autompg.csv", "target": "origin", "sample": "autompg"}  # text brands, missing horsepower


@pytest.fixture(scope="module")
def cars(tmp_path_factory):
    """api.fit of configs/mlp.yaml on Auto MPG's origin (USA / Europe / Japan), 20 epochs, quiet: (folder, run)."""
    import os

    from lit_nets import api

    work = tmp_path_factory.mktemp("api")
    here = os.getcwd()
    os.chdir(work)
    try:
        run = api.fit(str(CONFIGS / "mlp.yaml"), data=AUTOMPG, trainer={"max_epochs": 20}, verbose=False)
    finally:
        os.chdir(here)
    return work, run


def test_fit_returns_the_run_with_its_checkpoints_metrics_and_curves(cars) -> None:
    import matplotlib.figure

    work, run = cars
    assert (work / run.best).is_file() and (work / run.last).is_file() and not run.interrupted
    assert set(run.test) >= {"test/acc", "test/f1", "test/loss", "test/ece"} and run.test["test/acc"] > 0.6
    curves = type(run)(work / run.folder, None, None).curves()
    assert list(curves.dropna(subset=["val/loss"]).index) == list(range(20))  # a row per epoch, 0 to 19
    assert curves["train/loss"].dropna().iloc[-1] < curves["train/loss"].dropna().iloc[0]
    assert isinstance(type(run)(work / run.folder, None, None).figure(), matplotlib.figure.Figure)


def test_a_dataframe_of_raw_rows_is_predicted_as_the_predict_command_predicts_it(cars, monkeypatch) -> None:
    """Rows with text categories and missing numbers, straight from the file: the predictor's answers equal
    ``predict --data.predict_path``'s file."""
    from lit_nets import api

    work, run = cars
    monkeypatch.chdir(work)
    rows = pd.read_csv("data/autompg.csv")
    rows = rows[rows["horsepower"].isna() | (rows.index < 20)].drop(columns="origin")  # the 6 missing values in
    assert rows["horsepower"].isna().sum() == 6
    rows.to_csv("rows.csv", index=False)
    in_process("predict", "--ckpt_path", str(run.best), "--data.predict_path", "rows.csv", cwd=work, check=True)
    written = pd.read_csv(run.best.parent.parent / "rows.predictions.csv")
    answers = api.load(run.best).predict(rows)
    assert list(answers["label"]) == list(written["label"])
    for name in ("USA", "Europe", "Japan"):
        assert np.allclose(answers[f"prob_{name}"], written[f"prob_{name}"], atol=2e-6)
    with pytest.raises(TypeError, match="takes a pandas DataFrame"):
        api.load(run.best).predict(rows.to_numpy())


def test_images_in_memory_and_an_exported_file_answer_as_the_checkpoint(cnn_run, sample) -> None:
    from PIL import Image

    from lit_nets import api
    from lit_nets.deploy.inference import load_classifier

    work, _ = cnn_run
    last = work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    images, _ = sample
    pick = images[250::500]  # one of each digit, uint8 (10, 1, 28, 28)
    model = load_classifier(last)
    with torch.no_grad():
        expected = model.probabilities(model(pick)).numpy()
    checkpoint, exported = api.load(last), api.load(next((work / "exported").glob("*.onnx")))
    batch = pick[:, 0].numpy()  # (10, 28, 28) uint8
    for predictor, given in [
        (checkpoint, batch),
        (checkpoint, batch.astype(np.float32) / 255),  # floats in [0, 1]
        (checkpoint, [Image.fromarray(image) for image in batch]),
        (exported, batch),
    ]:
        assert np.allclose(predictor.predict_proba(given), expected, atol=1e-5)
    assert list(checkpoint.predict(batch)["label"]) == [model.class_names[i] for i in expected.argmax(1)]
    assert checkpoint.task == "classes" and checkpoint.classes == [str(d) for d in range(10)]


def test_a_value_model_answers_values(tmp_path: Path, monkeypatch) -> None:
    from lit_nets import api

    monkeypatch.chdir(tmp_path)
    mpg = {"path": "data/autompg.csv", "target": "mpg", "sample": "autompg"}
    run = api.fit(str(CONFIGS / "regression.yaml"), data=mpg, trainer={"max_epochs": 3}, verbose=False)
    rows = pd.read_csv("data/autompg.csv").head(10)
    answers = api.load(run.best).predict(rows.drop(columns="mpg"))
    assert list(answers.columns) == ["value"] and answers["value"].between(5, 50).all()
    with pytest.raises(ValueError, match="no probabilities"):
        api.load(run.best).predict_proba(rows)


def test_the_confusion_matrix_of_rows_against_their_classes(cars) -> None:
    import matplotlib.figure

    from lit_nets import api

    work, run = cars
    frame = pd.read_csv(work / "data" / "autompg.csv")
    predictor = api.load(work / run.best)
    figure = predictor.confusion(frame.drop(columns="origin"), frame["origin"])
    assert isinstance(figure, matplotlib.figure.Figure)
    cells = [t.get_text() for t in figure.axes[0].texts]  # the counts torchmetrics writes in the cells
    predicted = predictor.predict(frame.drop(columns="origin"))["label"]
    assert sum(int(c) for c in cells) == len(frame)
    diagonal = [int(cells[i * 3 + i]) for i in range(3)]
    assert sum(diagonal) == int((predicted == frame["origin"]).sum())
    with pytest.raises(ValueError, match="not classes of this model"):
        predictor.confusion(frame.drop(columns="origin")[:2], ["USA", "Mars"])


def test_a_file_predicted_in_parts_answers_as_the_predictor_and_a_bad_row_leaves_no_file(
    cars, monkeypatch, capfd
) -> None:
    """predict reads a file a part at a time (constant memory): over 12 parts of 100 rows, with an id column, the
    answers equal the predictor's on the whole frame; a bad value in the 11th part ends with one line and removes
    the rows already written."""
    from lit_nets import api

    work, run = cars
    monkeypatch.chdir(work)
    monkeypatch.setattr("lit_nets.core.data.streamed.PART_ROWS", 100)
    rows = pd.concat([pd.read_csv("data/autompg.csv")] * 3, ignore_index=True)
    rows.insert(0, "car", [f"car{i}" for i in range(len(rows))])
    rows.to_csv("many.csv", index=False)
    args = ("predict", "--ckpt_path", str(run.best), "--data.predict_path", "many.csv", "--data.id_column", "car")
    done = in_process(*args, cwd=work, monkeypatch=monkeypatch, capfd=capfd, check=True)
    written = pd.read_csv(run.best.parent.parent / "many.predictions.csv")
    answers = api.load(run.best).predict(rows.drop(columns=["car", "origin"]))
    assert list(written["car"]) == list(rows["car"]) and len(written) == 1176
    assert list(written["label"]) == list(answers["label"])
    assert np.allclose(written["prob_USA"], answers["prob_USA"], atol=2e-6)
    accuracy = (answers["label"] == rows["origin"]).mean()
    assert f"Predicted 1,176 inputs; accuracy against their labels {accuracy:.4f}" in done.stdout
    rows["weight"] = rows["weight"].astype(object)
    rows.loc[1000, "weight"] = "heavy"
    rows.to_csv("many.csv", index=False)
    (run.best.parent.parent / "many.predictions.csv").unlink()
    monkeypatch.setattr("lit_nets.train.callbacks.outputs.PredictionWriter.FLUSH_ROWS", 200)  # written in parts too
    broken = in_process(*args, cwd=work, monkeypatch=monkeypatch, capfd=capfd)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert "error: many.csv: column 'weight' was numeric in training, but line 1002 has 'heavy'" in broken.stderr
    assert "many.predictions.csv removed: the predict stopped after 900 rows" in broken.stdout  # 1 part read ahead
    assert not (run.best.parent.parent / "many.predictions.csv").exists()


@pytest.mark.parametrize("kind", ["parquet", "feather"])
def test_parquet_and_feather_files_are_predicted_in_parts_as_the_predictor_answers(cars, monkeypatch, capfd, kind):
    """pyarrow's batch readers: Parquet by 100 rows, Feather by its record batches (written 100 rows each)."""
    from lit_nets import api

    work, run = cars
    monkeypatch.chdir(work)
    monkeypatch.setattr("lit_nets.core.data.streamed.PART_ROWS", 100)
    rows = pd.concat([pd.read_csv("data/autompg.csv")] * 2, ignore_index=True).drop(columns="origin")
    if kind == "parquet":
        rows.to_parquet("many.parquet", row_group_size=100)
    else:
        import pyarrow as pa
        from pyarrow import feather

        feather.write_feather(pa.Table.from_pandas(rows), "many.feather", chunksize=100)
    args = ("predict", "--ckpt_path", str(run.best), "--data.predict_path", f"many.{kind}")
    in_process(*args, cwd=work, monkeypatch=monkeypatch, capfd=capfd, check=True)
    written = pd.read_csv(run.best.parent.parent / "many.predictions.csv")
    answers = api.load(run.best).predict(rows)
    assert list(written["id"]) == list(range(len(rows))) and list(written["label"]) == list(answers["label"])
    assert np.allclose(written["prob_Japan"], answers["prob_Japan"], atol=2e-6)
