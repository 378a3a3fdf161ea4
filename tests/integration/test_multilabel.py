"""Several labels at once on real data: diamonds' three grades from a table (configs/multilabel.yaml on 3,000 of its
rows) and pairs of real MNIST digits from a folder and a manifest (configs/multilabel_images.yaml). A threshold per
label is chosen on validation and every command decides with it; scikit-learn's gradient boosting, one per label, on
the same split is the reference."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers.cli import CONFIGS, fit_for_fixture, in_process, printed_scores, run_cli

QUIET = ("--trainer.enable_progress_bar", "false")
LABELS = ["fine_cut", "colourless", "clear"]


@pytest.fixture(scope="module")
def grades(tmp_path_factory) -> tuple[Path, Path, str]:
    """configs/multilabel.yaml on 3,000 rows of the diamond_labels sample (15 epochs): (folder, best, printed)."""
    from lit_nets.core.data.samples import diamond_labels_frame

    work = tmp_path_factory.mktemp("grades")
    diamond_labels_frame().sample(3000, random_state=0).to_csv(work / "grades.csv", index=False)
    args = ("--data.path", "grades.csv", "--data.sample", "null", "--trainer.max_epochs", "15")
    best, printed = fit_for_fixture(work, "--config", str(CONFIGS / "multilabel.yaml"), *args, *QUIET)
    return work, best, printed


def test_each_label_gets_the_threshold_of_its_best_validation_f1(grades, monkeypatch) -> None:
    from torchmetrics.functional.classification import multilabel_f1_score

    from lit_nets.core.models import labels
    from lit_nets.deploy.inference import checkpoint_data, load_classifier

    work, best, printed = grades
    monkeypatch.chdir(work)  # the checkpoint names its data relative to where it was trained
    model = load_classifier(best)
    x, y = checkpoint_data(best, "fit", "the test").splits.val
    with torch.no_grad():
        probs = model.probabilities(model(x))
    cuts = model.decision_threshold
    assert cuts.shape == (3,) and torch.allclose(cuts, labels.thresholds(probs, y))
    assert (cuts - 0.5).abs().max() > 0.05, cuts  # a model that thresholds at 0.5 regardless fails here
    chosen = multilabel_f1_score((probs >= cuts).long(), y.long(), 3, average="none")
    at_half = multilabel_f1_score((probs >= 0.5).long(), y.long(), 3, average="none")
    assert (chosen >= at_half - 1e-6).all(), (chosen, at_half)
    scores = printed_scores(printed)
    assert {"test/map", "test/f1_micro", "test/subset_acc", "test/f1/clear", "test/auc/fine_cut"} <= set(scores)
    assert "test/acc" not in scores
    assert (best.parent.parent / "per_label_test.png").stat().st_size > 5_000
    assert "val_map" in best.name  # kept by val/map


def test_an_mlp_ranks_the_grades_as_well_as_gradient_boosting(grades, monkeypatch) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from torchmetrics.functional.classification import multilabel_average_precision

    from lit_nets.deploy.inference import checkpoint_data

    work, best, printed = grades
    monkeypatch.chdir(work)  # the checkpoint names its data relative to where it was trained
    data = checkpoint_data(best, "fit", "the test")
    (xt, yt), (xv, yv), (xs, ys) = data.splits.train, data.splits.val, data.splits.test
    x, y = torch.cat([xt, xv]).numpy(), torch.cat([yt, yv]).numpy()
    boosted = torch.tensor(
        [
            HistGradientBoostingClassifier(random_state=0).fit(x, y[:, j]).predict_proba(xs.numpy())[:, 1]
            for j in range(3)
        ]
    ).T
    reference = float(multilabel_average_precision(boosted.float(), ys.long(), 3))
    ours = printed_scores(printed)["test/map"]
    print(f"diamond grades, 3,000 rows: test mAP MLP {ours:.4f}, HistGradientBoosting per label {reference:.4f}")
    assert ours > reference - 0.05, (ours, reference)


def test_predict_export_and_serve_decide_each_label_at_its_threshold(grades) -> None:
    from lit_nets.deploy.inference import load_classifier
    from lit_nets.deploy.serve.api import ClassifierAPI
    from lit_nets.deploy.serve.model import load

    work, best, _ = grades
    model = load_classifier(best)
    cuts = model.decision_threshold.tolist()
    in_process("predict", "--ckpt_path", str(best), cwd=work, check=True)
    table = pd.read_csv(best.parent.parent / "predictions.csv", keep_default_na=False)
    assert list(table.columns) == ["id", "labels", *(f"prob_{n}" for n in LABELS), "true_labels"]
    decided = table[[f"prob_{n}" for n in LABELS]].to_numpy() >= cuts
    written = [set(text.split()) for text in table["labels"]]
    assert written == [{n for n, on in zip(LABELS, row, strict=True) if on} for row in decided]
    half = table[[f"prob_{n}" for n in LABELS]].to_numpy() >= 0.5
    assert (decided != half).any()  # some rows are decided otherwise than at 0.5: the threshold is what decides

    run_cli("export", "--ckpt_path", str(best), "--format", "onnx", "--out", "exported", cwd=work)
    onnx = next((work / "exported").glob("*.onnx"))
    meta = json.loads(onnx.with_name(onnx.name + ".json").read_text())
    assert meta["task"] == {"kind": "labels"} and meta["threshold"] == pytest.approx(cuts)
    rows = pd.read_csv(work / "grades.csv").iloc[table["id"].to_numpy()[:10]]
    for path in (onnx, best):
        api = ClassifierAPI(str(path), max_pixels=2**24, top_k=3)
        api.model, api.device = load(str(path)), "cpu"
        for k, (_, row) in enumerate(rows.drop(columns=LABELS).iterrows()):
            answer = api.encode_response(api.unbatch(api.predict(api.batch([api.decode_request(row.to_dict())])))[0])
            assert set(answer["labels"]) == written[k], (answer, written[k])
            assert answer["probabilities"]["clear"] == pytest.approx(table["prob_clear"].iloc[k], abs=1e-4)


def test_pairs_of_digits_from_a_manifest_are_read_with_both_labels(tmp_path: Path, monkeypatch) -> None:
    """configs/multilabel_images.yaml (its sample written on first use) for 3 epochs, calibrated per label."""
    from lit_nets.deploy.inference import load_classifier

    monkeypatch.chdir(tmp_path)
    args = ("--config", str(CONFIGS / "multilabel_images.yaml"), "--trainer.max_epochs", "3")
    best, printed = fit_for_fixture(tmp_path, *args, "--model.calibrate", "temperature", *QUIET)
    scores = printed_scores(printed)
    assert scores["test/map"] > 0.9 and scores["test/f1_micro"] > 0.75, scores
    assert "test/ece_uncalibrated" in scores and "test/auc/9" in scores
    model = load_classifier(best)
    assert model.temperature.shape == (10,) and (model.temperature - 1).abs().max() > 0.02
    manifest = pd.read_csv(tmp_path / "data" / "mnist_pairs" / "manifest.csv", dtype=str)
    assert len(manifest) == 3000 and manifest["labels"].str.split().map(len).isin([1, 2]).all()
    assert model.class_names == [str(d) for d in range(10)]


@pytest.mark.parametrize(
    ("rows", "said"),
    [
        ({"a": [1, 2] * 10, "x": ["yes", "maybe"] * 10, "y": [0, 1] * 10}, "label column 'x', line 3: 'maybe' is not"),
        ({"a": [1, 2] * 10, "x": [0, 1] * 10}, "several labels are two or more different two-valued columns"),
    ],
)
def test_a_label_column_that_is_not_two_valued_is_one_line(tmp_path: Path, monkeypatch, capfd, rows, said) -> None:
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    target = "[x, y]" if "y" in rows else "[x, x]"
    done = in_process(
        "fit", "--config", str(CONFIGS / "multilabel.yaml"), "--data.path", "t.csv", "--data.target", target,
        "--data.sample", "null", cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert said in done.stderr.strip().splitlines()[-1]


def test_cv_folds_several_labels_plainly_and_explain_names_the_decided_labels(grades, monkeypatch, capfd) -> None:
    work, best, _ = grades
    monkeypatch.chdir(work)
    args = ("--config", str(CONFIGS / "multilabel.yaml"), "--data.path", "grades.csv", "--data.sample", "null")
    done = in_process(
        "cv", *args, "--trainer.max_epochs", "2", "--folds", "2", *QUIET, cwd=work, monkeypatch=monkeypatch,
        capfd=capfd, check=True,
    )  # fmt: skip
    assert "2 folds, plain (several labels: label sets are too many to stratify by)" in done.stderr
    oof = pd.read_csv(work / "lightning_logs" / "cv" / "multilabel" / "oof_predictions.csv", keep_default_na=False)
    assert len(oof) == oof["id"].nunique() and {"labels", "true_labels", "prob_clear"} <= set(oof.columns)
    pd.read_csv(work / "grades.csv").head(5).to_csv(work / "five.csv", index=False)
    in_process(
        "explain", "--ckpt_path", str(best), "--rows", "five.csv", "--importance_rows", "0", cwd=work, check=True
    )
    found = pd.read_csv(work / "explain" / "five.attributions.csv", keep_default_na=False)
    assert all(set(p.split()) <= set(LABELS) for p in found["predicted"]) and set(found["explained"]) <= set(LABELS)
