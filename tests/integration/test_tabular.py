"""CSV data and the MLP: shipped real data sets, messy files, predict on new files, clear errors."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers.cli import CONFIGS, in_process, quiet_trainer, run_cli, scalars
from lightning.pytorch import seed_everything

from lit_nets.__main__ import main
from lit_nets.core.data.samples import write_csv_sample
from lit_nets.core.errors import UserError
from lit_nets.core.models.nets import MLP
from lit_nets.data import CSVDataModule
from lit_nets.models import MLPClassifier

QUIET = ("--trainer.enable_progress_bar", "false")


def model_for(dm: CSVDataModule, **kwargs) -> MLPClassifier:
    links = ("num_classes", "input_shape", "mean", "std", "class_names", "class_weights", "schema")
    return MLPClassifier(**{name: getattr(dm, name) for name in links}, **kwargs)


def fit_and_test(dm: CSVDataModule, epochs: int, **kwargs) -> tuple[MLPClassifier, float]:
    seed_everything(0)
    model = model_for(dm, **kwargs)
    trainer = quiet_trainer(max_epochs=epochs)
    trainer.fit(model, dm)
    (result,) = trainer.test(model, dm, verbose=False)
    return model, result["test/acc"]


# -- the configs on the shipped data, through the CLI ----------------------------------------------------
# The two configs as the README runs them (test accuracy >= 0.90 on wine, >= 0.95 on breast cancer): test_readme.py


def test_predict_on_a_new_csv_needs_only_the_checkpoint(tmp_path: Path, monkeypatch, capfd) -> None:
    train_dir, other = tmp_path / "train", tmp_path / "elsewhere"
    train_dir.mkdir(), other.mkdir()
    fit = in_process(
        "fit",
        "--config",
        str(CONFIGS / "mlp.yaml"),
        *QUIET,
        "--trainer.max_epochs",
        "10",
        cwd=train_dir,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert fit.returncode == 0, fit.stderr[-2000:]
    rows = pd.read_csv(train_dir / "data" / "wine.csv").drop(columns="cultivar").iloc[::9]
    rows.to_csv(other / "new_rows.csv", index=False)
    ckpt = next((train_dir / "lightning_logs" / "version_0" / "checkpoints").glob("epoch*.ckpt"))
    proc = in_process(
        "predict",
        "--config",
        str(CONFIGS / "mlp.yaml"),
        "--ckpt_path",
        str(ckpt),
        "--data.predict_path",
        "new_rows.csv",
        *QUIET,
        cwd=other,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (other / "data").exists(), "the training CSV was not needed"
    out = pd.read_csv(ckpt.parent.parent / "new_rows.predictions.csv")  # beside the checkpoint, in its run
    assert not (other / "lightning_logs").exists() and not (other / "config.yaml").exists(), "no folder of its own"
    assert len(out) == len(rows) and "Predicted 20 inputs." in proc.stdout
    assert set(out["label"]) <= {"class_0", "class_1", "class_2"}
    assert out["id"].tolist() == list(range(len(rows)))
    assert ((out[["prob_class_0", "prob_class_1", "prob_class_2"]].sum(axis=1) - 1).abs() < 1e-4).all()

    # a column of the user's carried into the file as each row's id, under its own name (a Kaggle submission's)
    rows.insert(0, "PassengerId", [f"{7 * i:04d}_01" for i in range(len(rows))])
    rows.to_csv(other / "passengers.csv", index=False)
    named = in_process("predict", "--config", str(CONFIGS / "mlp.yaml"), "--ckpt_path", str(ckpt),
                       "--data.predict_path", "passengers.csv", "--data.id_column", "PassengerId", *QUIET, cwd=other,
                       monkeypatch=monkeypatch, capfd=capfd)  # fmt: skip
    assert named.returncode == 0, named.stderr[-2000:]
    carried = pd.read_csv(ckpt.parent.parent / "passengers.predictions.csv", dtype={"PassengerId": str})
    assert carried.columns[0] == "PassengerId" and carried["PassengerId"].tolist() == rows["PassengerId"].tolist()
    assert carried["label"].tolist() == out["label"].tolist(), "the id column is no feature"


# -- real-world files ---------------------------------------------------------------------------------------
def test_string_labels_text_column_and_missing_values_train_and_predict(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="lit_nets")
    path = write_csv_sample("autompg", tmp_path / "autompg.csv")
    frame = pd.read_csv(path)
    assert frame["horsepower"].isna().sum() == 6 and not pd.api.types.is_numeric_dtype(frame["brand"])
    dm = CSVDataModule(path=str(path), target="origin", batch_size=32)
    schema = dm.fitted_schema
    assert schema.classes == ["Europe", "Japan", "USA"]
    assert [c["name"] for c in schema.categorical] == ["brand"]
    model, acc = fit_and_test(dm, epochs=30, lr=3e-3)
    assert acc >= 0.85, f"origin from the car's figures and brand: test accuracy {acc:.3f}"
    # predict on rows without the target, with a brand never seen and a missing number
    new = frame.drop(columns="origin").head(5).copy()
    new.loc[0, "brand"] = "trabant"
    new.loc[1, "weight"] = float("nan")
    new.to_csv(tmp_path / "new.csv", index=False)
    pdm = CSVDataModule(path=str(path), target="origin", predict_path=str(tmp_path / "new.csv"))
    pdm.setup("predict")
    x, y, index = next(iter(pdm.predict_dataloader()))
    assert x.shape == (5, schema.input_size) and (y == -1).all() and index.tolist() == list(range(5))
    assert x[0, len(schema.numeric) :].sum() == 0, "an unseen brand encodes as no brand"
    assert "categories not seen in training" in caplog.text and "imputed 1 missing value" in caplog.text
    assert model.predict_step((x, y, index), 0)["probs"].shape == (5, 3)


def test_the_seeds_case_ten_numeric_features_binary(tmp_path: Path) -> None:
    path = write_csv_sample("breast_cancer", tmp_path / "breast_cancer.csv")
    ten = list(pd.read_csv(path).columns[:10])  # the ten "mean ..." measurements
    dm = CSVDataModule(path=str(path), target="diagnosis", features=ten, batch_size=32)
    assert dm.input_shape == [10] and dm.num_classes == 2
    _, acc = fit_and_test(dm, epochs=20, loss="bce", hidden=[16], dropout=0.1, optimizer="sgd", lr=0.05)
    assert acc >= 0.85


def test_statistics_come_from_the_training_split_only(tmp_path: Path) -> None:
    path = write_csv_sample("wine", tmp_path / "wine.csv")
    dm = CSVDataModule(path=str(path), target="cultivar")
    train = dm.frames()["train"]
    assert len(train) + len(dm.frames()["val"]) + len(dm.frames()["test"]) == 178
    assert dm.mean[0] == pytest.approx(train["alcohol"].mean())
    assert dm.mean[0] != pytest.approx(pd.read_csv(path)["alcohol"].mean(), abs=1e-6)


def test_balanced_class_weights_follow_the_training_counts(tmp_path: Path) -> None:
    path = write_csv_sample("autompg", tmp_path / "autompg.csv")
    dm = CSVDataModule(path=str(path), target="origin", class_weights="balanced")
    counts = dm.train_class_counts()
    weights = dm.class_weights
    assert weights == pytest.approx([sum(counts) / (3 * c) for c in counts], rel=1e-5)
    assert weights[2] < 1 < weights[0], "USA, the majority, weighs least"
    model = model_for(dm)
    assert torch.allclose(model.class_weights, torch.tensor(weights))


def test_weights_out_as_a_state_dict_and_into_a_fresh_mlp(tmp_path: Path) -> None:
    """The README's recipe, verbatim in spirit: checkpoint -> plain state_dict -> fresh MLP."""
    path = write_csv_sample("wine", tmp_path / "wine.csv")
    dm = CSVDataModule(path=str(path), target="cultivar")
    model, _ = fit_and_test(dm, epochs=3)
    trainer = quiet_trainer(max_epochs=0)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "best.ckpt")

    checkpoint = torch.load(tmp_path / "best.ckpt", weights_only=True)
    hp = checkpoint["hyper_parameters"]
    net_weights = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    torch.save(net_weights, tmp_path / "mlp_weights.pt")

    net = MLP(
        in_features=hp["input_shape"][0],
        num_outputs=hp["num_classes"],
        hidden=hp["hidden"],
        dropout=hp["dropout"],
        activation=hp["activation"],
        batch_norm=hp["batch_norm"],
    )
    net.load_state_dict(torch.load(tmp_path / "mlp_weights.pt", weights_only=True))
    net.eval()
    model.eval()
    x = dm.splits.test[0]
    mean, std = torch.tensor(hp["mean"]), torch.tensor(hp["std"])
    with torch.no_grad():
        assert torch.allclose(net((x - mean) / std), model(x), atol=1e-6)


def test_an_mlp_also_trains_on_flattened_mnist(tmp_path: Path, monkeypatch, capfd) -> None:
    proc = in_process(
        "fit",
        "--config",
        str(CONFIGS / "cnn.yaml"),
        "--config",
        str(CONFIGS / "debug.yaml"),
        "--model",
        "lit_nets.models.MLPClassifier",
        "--model.hidden",
        "[128]",
        "--data.download",
        "false",
        "--trainer.limit_train_batches",
        "30",
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "lightning_logs" / "debug" / "version_0"  # the debug overlay's runs
    assert "hidden:\n- 128" in (run / "hparams.yaml").read_text() and "Test (best):" in proc.stdout
    assert scalars(run)["test/acc"][-1][1] > 0.7


# -- bad input: one clear message naming the file, column and line ------------------------------------------
def write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


# a: 1, 1, 2, 3, ...: a number, not an id (a different whole number on every row, in row order, is left out)
NUMBERS = "a,b,label\n" + "".join(f"{i or 1},{i % 7},{'yes' if i % 2 else 'no'}\n" for i in range(40))


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        (None, {}, r"training CSV file .*nope.csv does not exist"),
        ("", {}, r"empty.csv is empty"),
        ("a,b,label\n", {}, r"empty.csv has a header but no rows"),
        (NUMBERS, {"target": "outcome"}, r"no target column 'outcome'; the columns are 'a', 'b', 'label'"),
        (NUMBERS.replace(",yes\n", ",no\n"), {}, r"target 'label' has a single class \('no'\)"),
        (NUMBERS.replace("\n17,3,", "\n17,oops,"), {}, r"column 'b' holds numbers, but line 19 has 'oops'"),
        (NUMBERS, {"features": ["a", "c"]}, r"no column 'c'"),
        # an id: a different value on every row teaches nothing about the rows the model has not seen
        (
            "".join(f"{i},name{i},{i % 2}\n" for i in range(80)).replace("0,name0", "a,b,label\n0,name0", 1),
            {},
            r"column 'b' has \d+ different values in \d+ training rows \(e.g. 'name\d+' on line \d+\): an id",
        ),
        (
            "".join(f"{i},name{i % 30},{i % 2}\n" for i in range(80)).replace("0,name0", "a,b,label\n0,name0", 1),
            {"max_categories": 20},
            r"column 'b' has \d\d different text values \(e.g. 'name\d+' on line \d+\), more than "
            r"data.max_categories=20",
        ),
        # numbers no model can take: before, the loss was NaN and the run ended at chance with exit 0
        (NUMBERS.replace("\n17,3,", "\n17,inf,"), {}, r"column 'b', line 19 has inf, not a finite number a model can"),
        (NUMBERS.replace("\n17,3,", "\n17,1e39,"), {}, r"column 'b', line 19 has 1e\+39, not a finite number"),
        (NUMBERS.replace("\n17,3,", "\n17,-Infinity,"), {}, r"column 'b', line 19 has -inf, not a finite number"),
        # pandas would have called the second column 'a.1' without a word
        (NUMBERS.replace("a,b,label", "a,a,label"), {}, r"the header names column 'a' 2 times \(columns 1, 2\)"),
        # splits that cannot be made: before, exit 0 with no validation, no best checkpoint and no test
        (
            "a,label\n" + "".join(f"{i},{i * 0.37:.2f}\n" for i in range(60)),
            {},
            r"target 'label' has 60 different values in 60 rows, so most classes have a single row"
            r".*bin it into classes",
        ),
        ("a,label\n1,x\n2,y\n3,z\n", {}, r"target 'label' has 3 different values in 3 rows"),
        (
            "a,label\n" + "".join(f"{i},{'xyz'[i % 3]}\n" for i in range(6)),
            {},
            r"too few rows to hold out a validation split: 3 rows left in 3 classes \(the largest has 1\); every class "
            r"needs at least 3 rows .* \(data.val_path\)",
        ),
    ],
)
def test_bad_training_files_are_named(
    tmp_path: Path, capsys, monkeypatch, text: str | None, kwargs: dict, message: str
) -> None:
    path = str(tmp_path / "nope.csv") if text is None else write(tmp_path, "empty.csv", text)
    with pytest.raises(UserError, match=message):
        CSVDataModule(path=path, **{"target": "label", **kwargs}).setup("fit")
    # and through the command line: one line on stderr, exit status 2, no traceback
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lit_nets"])  # the arguments go in through main(args)
    args = ["fit", "--config", str(CONFIGS / "mlp.yaml"), "--data.path", path, "--data.target", "label"]
    for key, value in kwargs.items():
        args += [f"--data.{key}", json.dumps(value) if isinstance(value, list) else str(value)]
    with pytest.raises(SystemExit) as exited:
        main(args)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "Traceback" not in err
    assert re.search("error: .*" + message, err), err


def test_dropped_rows_without_a_target_are_counted(tmp_path: Path, caplog) -> None:
    dm = CSVDataModule(path=write(tmp_path, "gaps.csv", NUMBERS.replace(",yes\n", ",\n", 3)), target="label")
    assert len(dm.frames()["whole"]) == 37
    assert "dropped 3 row(s) whose target 'label' is missing" in caplog.text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a\n1\n2\n", r"new.csv: missing feature column\(s\) 'b'; the model was trained on 'a', 'b'"),
        ("a,b\n1,2\n3,many\n", r"new.csv: column 'b' was numeric in training, but line 3 has 'many'"),
    ],
)
def test_bad_predict_files_are_named(tmp_path: Path, text: str, message: str) -> None:
    train = write(tmp_path, "train.csv", NUMBERS)
    dm = CSVDataModule(path=train, target="label", predict_path=write(tmp_path, "new.csv", text))
    dm.setup("predict")
    with pytest.raises(UserError, match=message):  # the file is read as predict goes (streamed)
        next(iter(dm.predict_dataloader()))


def test_a_predict_file_without_the_id_column_is_named(tmp_path: Path) -> None:
    keyed = "key," + NUMBERS.replace("\n", "\nk,", NUMBERS.count("\n") - 1)  # a key column of 'k' on every row
    train = write(tmp_path, "train.csv", keyed)
    dm = CSVDataModule(
        path=train, target="label", id_column="key", predict_path=write(tmp_path, "new.csv", "a,b\n1,2\n")
    )
    dm.setup("predict")
    with pytest.raises(UserError, match=r"new.csv: no data.id_column 'key'; the columns are 'a', 'b'"):
        next(iter(dm.predict_dataloader()))


def test_a_bad_csv_through_the_cli_is_one_line_without_traceback(tmp_path: Path) -> None:
    write(tmp_path, "data.csv", NUMBERS)
    proc = run_cli(
        "fit",
        "--config",
        str(CONFIGS / "mlp.yaml"),
        "--data.path",
        "data.csv",
        "--data.target",
        "y",
        *QUIET,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: data.csv: no target column 'y'; the columns are 'a', 'b', 'label' (set data.target)" in proc.stderr


# -- files as spreadsheets write them ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("variant", "write_options", "said"),
    [
        (
            "Excel, much of Europe",
            {"sep": ";", "decimal": ",", "encoding": "cp1252"},
            "read as ';'-separated, decimal commas, encoding cp1252",
        ),
        ("UTF-8 with a byte-order mark", {"encoding": "utf-8-sig"}, "encoding utf-8-sig"),
        ("tab-separated", {"sep": "\t"}, "read as tab-separated, decimal mark '.', encoding utf-8"),
    ],
)
def test_spreadsheet_files_give_the_same_data_as_a_plain_csv(
    tmp_path: Path, caplog, variant: str, write_options: dict, said: str
) -> None:
    """The wine set with an accented column name, written as spreadsheets write it: the same tensors as from the
    plain file, and the log says how it was read. (Before: "no target column 'cultivar'; the columns are
    'alcohol;malic_acid;...'", or "'utf-8' codec can't decode byte 0xf4".)"""
    caplog.set_level(logging.INFO, logger="lit_nets")
    wine = pd.read_csv(write_csv_sample("wine", tmp_path / "wine.csv")).rename(columns={"alcohol": "teneur côté"})
    wine.to_csv(tmp_path / "plain.csv", index=False)
    wine.to_csv(tmp_path / "variant.csv", index=False, **write_options)
    plain, other = (CSVDataModule(path=str(tmp_path / f), target="cultivar") for f in ("plain.csv", "variant.csv"))
    for dm in (plain, other):
        dm.setup("fit")
    assert other.fitted_schema.features == plain.fitted_schema.features
    assert torch.equal(other.splits.train[0], plain.splits.train[0]) and torch.equal(
        other.splits.test[1], plain.splits.test[1]
    )
    assert said in caplog.text
    if write_options.get("encoding") == "cp1252":
        assert "variant.csv is not UTF-8 (byte 0xf4 at position" in caplog.text and "data.encoding" in caplog.text


def test_the_reading_options_override_the_detection(tmp_path: Path) -> None:
    text = "a;b;label\n" + "".join(f"{i},5;{i % 7};{'yes' if i % 2 else 'no'}\n" for i in range(40))
    path = write(tmp_path, "semi.csv", text)
    dm = CSVDataModule(path=path, target="label", decimal=".", categorical=["a"])  # "1,5" is then a category
    assert [c["name"] for c in dm.fitted_schema.categorical] == ["a"]
    assert CSVDataModule(path=path, target="label").fitted_schema.numeric[0]["name"] == "a"  # detected: 1.5
    with pytest.raises(UserError, match=r"no target column 'label' \(did you mean 'a;b;label'\?\); the columns are"):
        CSVDataModule(path=path, target="label", sep=",").setup("fit")
    latin = tmp_path / "latin.csv"
    rows = [f"{i % 9},{'été' if i % 2 else 'hiver'}" for i in range(40)]
    latin.write_bytes("\n".join(["x,label", *rows]).encode("latin-1"))
    dm = CSVDataModule(path=str(latin), target="label", encoding="latin-1")
    assert dm.class_names == ["hiver", "été"]


def test_a_column_without_values_is_left_out_with_a_warning(tmp_path: Path, caplog) -> None:
    text = "a,empty,b,label\n" + "".join(f"{i % 11},,{i % 7},{'yes' if i % 2 else 'no'}\n" for i in range(40))
    dm = CSVDataModule(path=write(tmp_path, "gaps.csv", text), target="label")
    assert dm.fitted_schema.features == ["a", "b"] and dm.input_shape == [2]
    assert "left out 1 column(s) without a single value in the training rows: 'empty'" in caplog.text
