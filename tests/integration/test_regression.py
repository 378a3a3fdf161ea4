"""Regression on a real table that ships in a package (mlxtend's Auto MPG: predict miles per gallon):
configs/regression.yaml as the docs give it with the table swapped in, against scikit-learn's gradient boosting on
the same split, and every command a value model goes through (predict, export, serve, explain, cv, tune) answering
in miles per gallon."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers.cli import CONFIGS, fit_for_fixture, in_process, printed_scores, run_cli

MPG = ("--data.path", "data/autompg.csv", "--data.target", "mpg", "--data.sample", "autompg")
QUIET = ("--trainer.enable_progress_bar", "false")


@pytest.fixture(scope="module")
def mpg(tmp_path_factory) -> tuple[Path, Path, str]:
    """configs/regression.yaml on Auto MPG, figures and the test after fit on: (folder, best checkpoint, printed)."""
    work = tmp_path_factory.mktemp("mpg")
    best, printed = fit_for_fixture(work, "--config", str(CONFIGS / "regression.yaml"), *MPG, *QUIET)
    return work, best, printed


def test_an_mlp_predicts_miles_per_gallon_as_well_as_gradient_boosting(mpg, monkeypatch) -> None:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.metrics import r2_score

    from lit_nets.deploy.inference import checkpoint_data

    work, best, printed = mpg
    monkeypatch.chdir(work)  # the checkpoint names its data relative to where it was trained
    scores = printed_scores(printed)
    assert set(scores) == {"test/loss", "test/rmse", "test/mae", "test/r2"}, scores  # no accuracy for a value
    assert "epoch" in best.name and "val_rmse" in best.name  # the checkpoint kept by val/rmse
    data = checkpoint_data(best, "fit", "the test")
    (xt, yt), (xv, yv), (xs, ys) = data.splits.train, data.splits.val, data.splits.test
    boosting = HistGradientBoostingRegressor(random_state=0).fit(torch.cat([xt, xv]), torch.cat([yt, yv]))
    reference = r2_score(ys, boosting.predict(xs))
    print(f"Auto MPG test R²: MLP {scores['test/r2']:.4f}, HistGradientBoosting {reference:.4f}")
    assert scores["test/r2"] > 0.8 and scores["test/r2"] > reference - 0.05, (scores, reference)
    run = best.parent.parent
    for figure in ("predicted_vs_true_test.png", "residuals_test.png"):
        assert (run / figure).stat().st_size > 10_000, figure


def test_predict_export_serve_and_explain_answer_in_the_targets_units(mpg, monkeypatch) -> None:
    from lit_nets.deploy.inference import load_classifier
    from lit_nets.deploy.serve.api import ClassifierAPI
    from lit_nets.deploy.serve.model import load

    work, best, printed = mpg
    monkeypatch.chdir(work)
    in_process("predict", "--ckpt_path", str(best), cwd=work, check=True)
    table = pd.read_csv(best.parent.parent / "predictions.csv")
    assert list(table.columns) == ["id", "value", "true_value"]
    rmse = float(((table["value"] - table["true_value"]) ** 2).mean() ** 0.5)
    assert rmse == pytest.approx(printed_scores(printed)["test/rmse"], rel=1e-4)  # in mpg, as the test split's
    assert abs(table["value"].mean() - table["true_value"].mean()) < 2.0  # a model blind to the scale is ~23 mpg off

    run_cli("export", "--ckpt_path", str(best), "--format", "onnx", "--out", "exported", cwd=work)
    onnx = next((work / "exported").glob("*.onnx"))
    meta = json.loads(onnx.with_name(onnx.name + ".json").read_text())
    assert meta["task"]["kind"] == "value" and meta["task"]["name"] == "mpg"
    cars = pd.read_csv(work / "data" / "autompg.csv").iloc[table["id"].to_numpy()[:20]]
    record = cars.drop(columns="mpg").iloc[0].to_dict()
    model = load_classifier(best)
    for path in (onnx, best):  # the exported file and the checkpoint answer alike, in mpg
        api = ClassifierAPI(str(path), max_pixels=2**24, top_k=3)
        api.model, api.device = load(str(path)), "cpu"
        answer = api.encode_response(api.unbatch(api.predict(api.batch([api.decode_request(record)])))[0])
        assert set(answer) == {"value"} and answer["value"] == pytest.approx(table["value"].iloc[0], abs=1e-3)
        assert api.model.info()["task"] == "value"
    low, high = model.task.low, model.task.high
    assert low <= table["value"].min() and table["value"].max() <= high

    cars.to_csv(work / "cars.csv", index=False)
    in_process("explain", "--ckpt_path", str(best), "--rows", "cars.csv", "--out", "explained", cwd=work, check=True)
    found = pd.read_csv(work / "explained" / "cars.attributions.csv")
    contributions = found[[c for c in found.columns if c in record]].sum(axis=1)
    assert ((found["baseline"] + contributions - found["output"]).abs() < 0.05).all()  # in mpg: IG's completeness
    assert found["predicted"].to_numpy() == pytest.approx(table["value"].to_numpy()[:20], abs=1e-3)
    importance = pd.read_csv(work / "explained" / "importance.csv")
    assert "permutation_rmse_rise" in importance.columns and importance["permutation_rmse_rise"].iloc[0] > 0


def test_cv_folds_a_value_by_its_quantiles_and_tune_minimises_rmse(tmp_path: Path, monkeypatch, capfd) -> None:
    args = ("--config", str(CONFIGS / "regression.yaml"), *MPG, "--trainer.max_epochs", "3", *QUIET)
    done = in_process("cv", *args, "--folds", "3", cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd, check=True)
    assert "3 folds, stratified by tenths of the target's values (quantiles)" in done.stderr
    folder = tmp_path / "lightning_logs" / "cv" / "regression"
    results = pd.read_csv(folder / "results.csv")
    assert {"val/rmse", "val/r2", "test/rmse"} <= set(results.columns) and "val/acc" not in results.columns
    oof = pd.read_csv(folder / "oof_predictions.csv")
    assert len(oof) == oof["id"].nunique() and {"value", "true_value"} <= set(oof.columns)
    done = in_process(
        "tune", *args, "--space", str(CONFIGS / "search" / "mlp.yaml"), "--trials", "2", "--pruner", "none",
        cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd, check=True,
    )  # fmt: skip
    assert "objective val/rmse (minimize)" in done.stdout


def test_an_ensemble_of_the_recipe_predicts_a_value_as_its_members_mean(tmp_path: Path, monkeypatch) -> None:
    from lit_nets.deploy.inference import checkpoint_data, load_classifier

    monkeypatch.chdir(tmp_path)
    args = ("--config", str(CONFIGS / "regression_best.yaml"), *MPG, "--trainer.max_epochs", "8")
    best, printed = fit_for_fixture(tmp_path, *args, "--figures.enabled", "false", *QUIET)
    assert printed_scores(printed)["test/r2"] > 0.7, printed[-2000:]
    model = load_classifier(best)
    x = checkpoint_data(best, "test", "the test").splits.test[0]
    net = model.net
    with torch.no_grad():
        net.train(False)
        mean = net(model.normalize(x))
        net.training = True  # the members' outputs, (rows, 4, 1), without dropout's randomness in the blocks
        for module in net.modules():
            module.training = module is net
        members = net(model.normalize(x))
    assert members.shape[1] == 4 and torch.allclose(mean, members.mean(dim=1), atol=1e-5)


@pytest.mark.parametrize(
    ("column", "said"),
    [
        (["12", "14", "n/a?", "9"] * 10, "column 'target', line 4: 'n/a?' is not a number; a value target"),
        ([7.0] * 40, "target 'target' is 7 in every row: there is nothing to predict"),
    ],
)
def test_a_target_with_text_or_one_value_is_one_line(tmp_path: Path, monkeypatch, capfd, column, said) -> None:
    frame = pd.DataFrame({"a": range(40), "b": [i % 7 for i in range(40)], "target": column})
    frame.to_csv(tmp_path / "t.csv", index=False)
    done = in_process(
        "fit", "--config", str(CONFIGS / "regression.yaml"), "--data.path", "t.csv", "--data.target", "target",
        "--data.sample", "null", cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert said in done.stderr.strip().splitlines()[-1]
