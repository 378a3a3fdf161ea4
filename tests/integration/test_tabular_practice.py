"""Tabular at a practitioner's level, on real data: a column of 300 categories learned as an embedding (predicted
with unseen categories, exported to ONNX), Parquet and Feather files, early stopping, and why the model decided
(Integrated Gradients per row, importance over the validation split)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.cli import CONFIGS, fit_for_fixture, in_process, quiet_trainer

from lit_nets.core.checkpoint_files import load
from lit_nets.core.data.samples import write_csv_sample
from lit_nets.core.data.schema import UNSEEN
from lit_nets.core.errors import UserError
from lit_nets.data import CSVDataModule
from lit_nets.deploy.inference import load_classifier

LECTURERS = 300


@pytest.fixture(scope="module")
def ratings(tmp_path_factory) -> Path:
    """A real table with a 300-value categorical column: 6,000 InstEval ratings of its 300 most rated lecturers
    (lecturer, student age, lecturer age, service course, department -> rating high / low), and ``new.csv``: 200
    ratings of lecturers outside those 300 (categories the model never saw), some with the department missing."""
    work = tmp_path_factory.mktemp("ratings")
    full = pd.read_csv(write_csv_sample("insteval", work / "insteval.csv")).drop(columns="student")
    top = full["lecturer"].value_counts().index[:LECTURERS]
    full["lecturer"] = "L" + full["lecturer"].astype(str)  # ids as text, as a zip code or product id is
    top = {f"L{t}" for t in top}
    known = full[full["lecturer"].isin(top)].sample(6000, random_state=0)
    known.to_csv(work / "ratings.csv", index=False)
    new = full[~full["lecturer"].isin(top)].sample(200, random_state=0)
    new.loc[new.index[:20], "dept"] = np.nan
    new.to_csv(work / "new.csv", index=False)
    return work


@pytest.fixture(scope="module")
def embedded_run(ratings: Path, tmp_path_factory) -> tuple[Path, Path, str]:
    """configs/mlp.yaml on ratings.csv (defaults on: early stopping, figures, the test after fit): (folder, best
    checkpoint, what fit printed)."""
    work = tmp_path_factory.mktemp("embedded")
    best, printed = fit_for_fixture(
        work,
        "--config",
        str(CONFIGS / "mlp.yaml"),
        "--data.path",
        str(ratings / "ratings.csv"),
        "--data.target",
        "rating",
        "--data.sample",
        "null",
        "--data.categorical",
        "[dept]",
        "--trainer.enable_progress_bar",
        "false",
    )
    return work, best, printed


def test_a_300_value_column_learns_an_embedding_and_beats_the_majority(embedded_run, ratings: Path) -> None:
    _, best, printed = embedded_run
    schema = load_classifier(best).schema
    lecturer = next(c for c in schema["categorical"] if c["name"] == "lecturer")
    assert lecturer["encoding"] == "embedding" and lecturer["categories"][:2] == [UNSEEN, "(missing)"]
    assert len(lecturer["categories"]) == LECTURERS + 2 and lecturer["size"] == 39  # fastai's rule for 302
    dept = next(c for c in schema["categorical"] if c["name"] == "dept")
    assert dept["encoding"] == "embedding"  # 14 departments > onehot_max 10 (auto)
    assert "embedded: lecturer (300 categories -> 39)" in printed
    test_acc = float(re.search(r"test/acc (\d\.\d+)", printed).group(1))
    majority = pd.read_csv(ratings / "ratings.csv")["rating"].value_counts(normalize=True).max()
    # 1,200 test ratings: the majority class is 0.557; the lecturers' embeddings carry what they are rated
    assert test_acc >= majority + 0.03, f"test accuracy {test_acc:.4f}, majority {majority:.4f}"


def test_unseen_lecturers_predict_and_onnx_answers_as_the_checkpoint(
    embedded_run, ratings: Path, monkeypatch, capfd, caplog
) -> None:
    import onnxruntime

    from lit_nets.core.data.schema import read_schema

    work, best, _ = embedded_run
    out = work / "new_predictions.csv"
    proc = in_process(
        "predict",
        "--config",
        str(CONFIGS / "mlp.yaml"),
        "--ckpt_path",
        str(best),
        "--data.predict_path",
        str(ratings / "new.csv"),
        "--prediction_writer.output",
        str(out),
        "--trainer.enable_progress_bar",
        "false",
        cwd=work,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    predictions = pd.read_csv(out)
    assert len(predictions) == 200 and predictions["label"].isin(["high", "low"]).all()
    assert (
        "200 value(s) of categories not seen in training, encoded as unseen: lecturer (200)"
        in proc.stderr + caplog.text
    )
    # every unseen lecturer reads as index 0, a missing department as index 1
    model = load_classifier(best)
    schema = read_schema(model.schema)
    x = torch.from_numpy(schema.encode(pd.read_csv(ratings / "new.csv"), "new.csv"))
    lecturer = schema.input_columns.index("lecturer")
    dept = schema.input_columns.index("dept")
    assert (x[:, lecturer] == 0).all() and (x[:20, dept] == 1).all() and (x[20:, dept] >= 2).all()
    proc = in_process(
        "export",
        "--ckpt_path",
        str(best),
        "--format",
        "onnx",
        "--out",
        str(work / "export"),
        cwd=work,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert proc.returncode == 0 and "same top-1: True" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    session = onnxruntime.InferenceSession(str(work / "export" / f"{best.stem}.onnx"))
    onnx_logits = session.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        logits = model(x).numpy()
    assert np.abs(onnx_logits - logits).max() < 1e-4  # the file of new lecturers, not only the test split


def test_explaining_rows_sums_each_embedding_back_to_its_column(embedded_run, ratings: Path, monkeypatch, capfd):
    work, best, _ = embedded_run
    proc = in_process(
        "explain",
        "--ckpt_path",
        str(best),
        "--rows",
        str(ratings / "new.csv"),
        "--out",
        str(work / "explain"),
        cwd=work,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(work / "explain" / "new.attributions.csv")
    features = ["studage", "lectage", "service", "lecturer", "dept"]
    assert set(features) <= set(table.columns) and len(table) == 200
    gap = (table["baseline"] + table[features].sum(axis=1) - table["output"]).abs()
    assert gap.max() <= 0.02 * max(1.0, float((table["output"] - table["baseline"]).abs().max()))
    importance = pd.read_csv(work / "explain" / "importance.csv")
    assert list(importance.columns[:2]) == ["column", "mean_abs_contribution"] and set(importance["column"]) == set(
        features
    )
    assert (work / "explain" / "importance.png").stat().st_size > 10_000
    held = re.search(r"importance on the validation split \(([\d,]+) rows\)", proc.stdout)
    assert held and 100 < int(held.group(1).replace(",", "")) <= 1000, "1,000 rows or fewer: the whole split"

    # the importance bounded: a seeded sample of the validation split (the whole of it took 443 s for the recipe)
    sampled = in_process("explain", "--ckpt_path", str(best), "--rows", str(ratings / "new.csv"), "--out",
                         str(work / "sampled"), "--importance_rows", "300", cwd=work, monkeypatch=monkeypatch,
                         capfd=capfd)  # fmt: skip
    assert sampled.returncode == 0, sampled.stderr[-2000:]
    assert f"importance on 300 rows drawn from the validation split's {held.group(1)}" in sampled.stdout
    import warnings

    from lit_nets.deploy.attributions import integrated_gradients, tabular_schema

    model = load_classifier(best, "cpu")
    frame = pd.read_csv(ratings / "ratings.csv")
    x = torch.from_numpy(tabular_schema(model).encode(frame, "ratings.csv"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = integrated_gradients(model, x)  # 6,000 rows: past Captum's internal batch, it warned and went slow
    assert not [w for w in caught if "Internal batch size" in str(w.message)] and found.values.shape == (6000, 5)
    none = in_process("explain", "--ckpt_path", str(best), "--rows", str(ratings / "new.csv"), "--out",
                      str(work / "rows_only"), "--importance_rows", "0", cwd=work, monkeypatch=monkeypatch,
                      capfd=capfd)  # fmt: skip
    assert none.returncode == 0 and sorted(p.name for p in (work / "rows_only").iterdir()) == ["new.attributions.csv"]


def test_the_checkpoint_and_its_onnx_file_serve_raw_records_alike(embedded_run, ratings: Path, monkeypatch, capfd):
    """Both services take the records as a user has them (lecturer ids as text, a department missing as null, 200
    lecturers never seen) and answer what the model computes; an unseen lecturer's embedding is the zero row, so with
    ``"explain": 1`` its column contributes exactly nothing, while a known lecturer's does."""
    import math

    import requests
    from helpers.service import Service, stop_cleanly

    from lit_nets.core.data.schema import read_schema

    work, best, _ = embedded_run
    proc = in_process(
        "export",
        "--ckpt_path",
        str(best),
        "--format",
        "onnx",
        "--out",
        str(work / "served"),
        cwd=work,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    frame = pd.concat([pd.read_csv(ratings / "new.csv").head(40), pd.read_csv(ratings / "ratings.csv").head(40)])
    features = frame.drop(columns="rating")
    records = [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
        for r in features.to_dict(orient="records")
    ]
    assert records[0]["dept"] is None  # the first 20 new ratings have no department
    model = load_classifier(best)
    x = torch.from_numpy(read_schema(model.schema).encode(features, "records"))
    with torch.no_grad():
        expected = torch.softmax(model(x), dim=1).numpy()
    services = [Service(best, work), Service(work / "served" / f"{best.stem}.onnx", work)]
    try:
        answers = []
        for served in services:
            served.wait_ready(180)
            body = [{**records[0], "explain": 1}, *records[1:]]
            answer = requests.post(f"{served.url}/predict", json=body, timeout=60)
            assert answer.status_code == 200, answer.text
            answers.append(answer.json()["predictions"])
    finally:
        stop_cleanly(*services)
    for predictions in answers:
        probabilities = np.array([[p["probabilities"][c] for c in model.class_names] for p in predictions])
        assert np.abs(probabilities - expected).max() < 1e-5
    checkpoint, onnx = answers
    assert "explanation" not in onnx[0]  # an exported graph answers, without attributions (its /info says so)
    unseen, known = checkpoint[0]["explanation"], checkpoint[-1]["explanation"]
    assert unseen["contributions"]["lecturer"] == 0.0 and unseen["contributions"]["dept"] == 0.0
    assert abs(known["contributions"]["lecturer"]) > 1e-3, known


# -- Parquet and Feather ------------------------------------------------------------------------------------
def test_parquet_and_feather_copies_of_wine_train_to_the_csv_accuracy(tmp_path: Path, monkeypatch, capfd) -> None:
    wine = pd.read_csv(write_csv_sample("wine", tmp_path / "wine.csv"))
    wine.to_parquet(tmp_path / "wine.parquet")
    wine.to_feather(tmp_path / "wine.feather")
    csv, parquet, feather = (
        CSVDataModule(path=str(tmp_path / f"wine.{kind}"), target="cultivar") for kind in ("csv", "parquet", "feather")
    )
    for dm in (csv, parquet, feather):
        dm.setup("fit")
    for other in (parquet, feather):  # the same rows, encoded to the same numbers
        assert torch.equal(other.splits.train[0], csv.splits.train[0]) and other.schema == csv.schema
    accuracies = {}
    for kind in ("csv", "parquet"):
        proc = in_process(
            "fit",
            "--config",
            str(CONFIGS / "mlp.yaml"),
            "--data.path",
            str(tmp_path / f"wine.{kind}"),
            "--data.sample",
            "null",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.logger.init_args.name",
            kind,
            cwd=tmp_path,
            monkeypatch=monkeypatch,
            capfd=capfd,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        accuracies[kind] = float(re.search(r"test/acc (\d\.\d+)", proc.stdout).group(1))
    assert accuracies["parquet"] == accuracies["csv"] >= 0.9, accuracies


def test_a_parquet_files_types_decide_and_bad_files_are_named(tmp_path: Path) -> None:
    frame = pd.DataFrame({"code": ["1", "2", "3", "1"] * 10, "x": np.linspace(0, 1, 40), "label": ["a", "b"] * 20})
    frame.to_parquet(tmp_path / "typed.parquet")  # codes stored as text: categories, never parsed as numbers
    dm = CSVDataModule(path=str(tmp_path / "typed.parquet"), target="label")
    assert [c["name"] for c in dm.fitted_schema.categorical] == ["code"]
    assert [c["name"] for c in dm.fitted_schema.numeric] == ["x"]
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(UserError, match=r"broken.parquet is not a readable Parquet file"):
        CSVDataModule(path=str(tmp_path / "broken.parquet"), target="label").frames()


# -- early stopping -----------------------------------------------------------------------------------------
def test_early_stopping_stops_a_run_whose_validation_loss_rises(tmp_path: Path, monkeypatch, capfd) -> None:
    """Validation rows whose labels are shuffled: the better the model fits wine, the worse its validation loss. The
    run stops 20 validations (the config's patience) after its best, keeps that best, and last.ckpt is the last."""
    wine = pd.read_csv(write_csv_sample("wine", tmp_path / "wine.csv"))
    rng = np.random.default_rng(0)
    shuffled = wine.sample(60, random_state=1)
    shuffled["cultivar"] = rng.permutation(shuffled["cultivar"].to_numpy())
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
    proc = in_process(
        "fit",
        "--config",
        str(CONFIGS / "mlp.yaml"),
        "--data.path",
        str(tmp_path / "wine.csv"),
        "--data.val_path",
        str(tmp_path / "shuffled.csv"),
        "--trainer.enable_progress_bar",
        "false",
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    stopped = re.search(r"Stopped:\s+early, after epoch (\d+) .*had not improved for 20 validations", proc.stdout)
    assert stopped, proc.stdout
    epoch = int(stopped.group(1))
    assert epoch < 80, f"max_epochs is 200; the run went on to epoch {epoch}"
    best = re.search(r"Best:\s+\S+epoch(\d+)-", proc.stdout)
    assert int(best.group(1)) == epoch - 20 and f"kept epoch{epoch - 20:02d}-" in proc.stdout
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert load(last)["epoch"] == epoch  # last.ckpt is the epoch it stopped at, not the best


def test_an_id_column_is_refused_and_auto_one_hot_encodes_few_categories(tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {
            "order_id": [f"A{i:04d}" for i in range(200)],
            "size": ["S", "M", "L", "XL"] * 50,
            "x": np.arange(200.0),
            "label": ["yes", "no"] * 100,
        }
    )
    rows.to_csv(tmp_path / "orders.csv", index=False)
    with pytest.raises(UserError, match=r"column 'order_id' has 1\d\d different values in 1\d\d training rows .*an id"):
        CSVDataModule(path=str(tmp_path / "orders.csv"), target="label").fitted_schema  # noqa: B018
    dm = CSVDataModule(path=str(tmp_path / "orders.csv"), target="label", features=["size", "x"])
    (size,) = dm.fitted_schema.categorical
    assert size["encoding"] == "onehot" and dm.input_shape == [1 + 4]
    forced = CSVDataModule(
        path=str(tmp_path / "orders.csv"), target="label", features=["size", "x"], categorical_encoding="embedding"
    )
    assert forced.fitted_schema.categorical[0]["encoding"] == "embedding" and forced.input_shape == [2]


# -- why the model decided ------------------------------------------------------------------------------------
def test_binary_attributions_are_complete_and_a_noise_column_ranks_low(tmp_path: Path) -> None:
    """Breast cancer with a column of seeded noise added, a binary (BCE) MLP: for every test row the baseline's logit
    plus the columns' contributions is the row's logit (Integrated Gradients' completeness), and the noise column
    is among the least important by both measures."""
    from lightning.pytorch import seed_everything

    from lit_nets.deploy.attributions import integrated_gradients, permutation_importance
    from lit_nets.models import MLPClassifier

    cancer = pd.read_csv(write_csv_sample("breast_cancer", tmp_path / "cancer.csv"))
    cancer.insert(0, "noise", np.random.default_rng(0).normal(size=len(cancer)))
    cancer.to_csv(tmp_path / "noisy.csv", index=False)
    dm = CSVDataModule(path=str(tmp_path / "noisy.csv"), target="diagnosis")
    dm.setup("fit")
    seed_everything(0)
    links = ("num_classes", "input_shape", "mean", "std", "class_names", "schema")
    model = MLPClassifier(**{k: getattr(dm, k) for k in links}, hidden=[32, 16], loss="bce", lr=0.001)
    quiet_trainer(max_epochs=25).fit(model, dm)
    x_test = dm.splits.test[0]
    found = integrated_gradients(model, x_test)
    with torch.no_grad():
        logits = model(x_test)[:, 0].numpy()
    np.testing.assert_allclose(found.output, logits, atol=1e-5)
    assert (found.explained == 1).all()  # one logit: the evidence for the second class, malignant
    total = found.baseline + found.values.sum(axis=1)
    assert np.abs(total - logits).max() <= 0.01 * max(1.0, float(np.abs(logits - found.baseline).max()))
    assert found.columns[0] == "noise" and len(found.columns) == 31
    mean_abs = np.abs(found.values).mean(axis=0)
    rank = int((mean_abs > mean_abs[0]).sum())  # 0: the most important
    assert rank >= 15, f"noise ranks {rank} of 31 by mean |contribution|"
    permuted = permutation_importance(model, *dm.splits.val)
    rises = sorted((v["loss_rise"] for v in permuted.values()), reverse=True)
    assert rises.index(permuted["noise"]["loss_rise"]) >= 15, permuted["noise"]


def test_explain_asks_for_images_or_rows(cnn_run, tmp_path: Path, monkeypatch, capfd) -> None:
    work, _ = cnn_run
    ckpt = str(work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")
    proc = in_process("explain", "--ckpt_path", ckpt, cwd=work, monkeypatch=monkeypatch, capfd=capfd)
    assert proc.returncode == 2 and "explain needs --images (an image model) or --rows (a tabular model)" in proc.stderr
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n")
    proc = in_process(
        "explain",
        "--ckpt_path",
        ckpt,
        "--rows",
        str(tmp_path / "rows.csv"),
        cwd=work,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert proc.returncode == 2 and "--rows explains a tabular (CSV-trained) model; this checkpoint is not one" in (
        proc.stderr
    )
    assert "Traceback" not in proc.stderr
