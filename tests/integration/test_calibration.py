"""Probabilities you can trust (``model.calibrate: temperature``, ``model.threshold: f1``) on real data: the temperature
and threshold are the ones fitted on the best epoch's validation logits, and predict, export, serve and the figures
use them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers.cli import CONFIGS, fit_for_fixture, in_process, printed_scores, run_cli, scalars

QUIET = ("--trainer.enable_progress_bar", "false")


def val_logits(model, ckpt: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from lit_nets.deploy.inference import checkpoint_data

    data = checkpoint_data(ckpt, "fit", "the test")
    z, y = [], []
    with torch.no_grad():
        for x, target in data.val_dataloader():
            z.append(model(x))
            y.append(target)
    return torch.cat(z), torch.cat(y)


@pytest.fixture(scope="module")
def cancer(tmp_path_factory) -> tuple[Path, Path, str]:
    """configs/mlp_bce.yaml (breast cancer) calibrated, its threshold chosen for F1, figures and test on: (folder,
    best checkpoint, what fit printed)."""
    work = tmp_path_factory.mktemp("calibrated")
    args = ("--model.calibrate", "temperature", "--model.threshold", "f1", "--model.dropout", "0", "--model.lr", "0.01")
    best, printed = fit_for_fixture(work, "--config", str(CONFIGS / "mlp_bce.yaml"), *args, *QUIET)
    return work, best, printed


def test_the_temperature_and_threshold_are_fitted_on_the_best_epochs_validation_logits(cancer, monkeypatch) -> None:
    from lit_nets.core.models.calibration import f1_threshold, fit_temperature
    from lit_nets.deploy.inference import load_classifier

    work, best, printed = cancer
    monkeypatch.chdir(work)  # the checkpoint names its data relative to where it was trained
    model = load_classifier(best)
    z, y = val_logits(model, best)
    temperature = float(model.temperature)
    assert abs(temperature - 1) > 0.05, temperature  # an MLP without dropout at lr 0.01 is not calibrated as it is
    assert temperature == pytest.approx(fit_temperature(z, y), rel=1e-3)
    threshold = float(model.decision_threshold)
    assert threshold == pytest.approx(f1_threshold(model.probabilities(z)[:, 1], y), abs=1e-6)
    for name in ("test/ece", "test/ece_uncalibrated", "test/nll", "test/nll_uncalibrated", "test/temperature"):
        assert name in printed
    run = best.parent.parent
    logged = scalars(run)
    assert {"val/ece", "val/nll_uncalibrated", "val/temperature", "val/threshold", "test/ece"} <= set(logged)
    assert logged["test/temperature"][-1][1] == pytest.approx(temperature, rel=1e-5)
    assert (run / "reliability.png").stat().st_size > 10_000


def test_predict_export_and_serve_give_the_calibrated_probabilities_and_the_threshold_decides(
    cancer, monkeypatch
) -> None:
    from lit_nets.deploy.inference import load_classifier
    from lit_nets.deploy.serve.api import ClassifierAPI
    from lit_nets.deploy.serve.model import load

    work, best, _ = cancer
    monkeypatch.chdir(work)
    model = load_classifier(best)
    temperature, threshold = float(model.temperature), float(model.decision_threshold)
    z, _ = val_logits(model, best)
    in_process("predict", "--ckpt_path", str(best), cwd=work, check=True)
    table = pd.read_csv(best.parent.parent / "predictions.csv")
    positive = table.filter(like="prob_").columns[1]
    assert (table["label"] == table[positive].ge(threshold).map({True: positive[5:], False: "benign"})).all()
    # the probabilities written are sigmoid(z / T), not sigmoid(z)
    from lit_nets.deploy.inference import checkpoint_data

    x = torch.cat([b[0] for b in checkpoint_data(best, "test", "the test").test_dataloader()])
    with torch.no_grad():
        expected = torch.sigmoid(model(x)[:, 0] / temperature)
    assert torch.allclose(torch.tensor(table[positive].to_numpy(), dtype=torch.float32), expected, atol=2e-6)

    run_cli("export", "--ckpt_path", str(best), "--format", "onnx", "--out", "exported", cwd=work)
    onnx = next((work / "exported").glob("*.onnx"))
    meta = json.loads(onnx.with_name(onnx.name + ".json").read_text())
    assert meta["temperature"] == pytest.approx(temperature) and meta["threshold"] == pytest.approx(threshold)
    served = load(str(onnx))
    with torch.no_grad():
        assert torch.allclose(served.forward(x)[:, 0], model(x)[:, 0] / temperature, atol=1e-5)

    api = ClassifierAPI(str(onnx), max_pixels=2**24, top_k=2)
    api.model, api.device = served, "cpu"
    probs = torch.sigmoid(z[:, 0] / temperature)
    assert served.info()["threshold"] == pytest.approx(threshold)
    for p in probs[(probs - threshold).abs() > 1e-3][:20]:  # not at the edge: the file's float32 sums differ a little
        label = served.decide(torch.stack([1 - p, p]))
        assert label == int(p >= threshold)
    record = {c: float(v) for c, v in zip(served.schema.features, x[0].tolist(), strict=False)}
    answer = api.encode_response(api.unbatch(api.predict(api.batch([api.decode_request(record)])))[0])
    assert abs(sum(answer["probabilities"].values()) - 1) < 1e-4


def test_a_cnn_calibrated_on_mnist_digits_has_a_lower_test_nll_and_ece(tmp_path: Path) -> None:
    """The shipped 5,000 digits, configs/cnn.yaml for 3 epochs: the temperature lowers the test split's NLL and ECE
    (with a temperature of 1 they would be equal)."""
    args = ("--config", str(CONFIGS / "cnn.yaml"), "--trainer.max_epochs", "3", "--model.calibrate", "temperature")
    _, printed = fit_for_fixture(tmp_path, *args, "--data.download", "false", "--figures.enabled", "false", *QUIET)
    tested = printed_scores(printed)
    assert abs(tested["test/temperature"] - 1) > 0.1, tested
    assert tested["test/nll"] < tested["test/nll_uncalibrated"], tested
    assert tested["test/ece"] < tested["test/ece_uncalibrated"], tested
    assert tested["test/loss"] == pytest.approx(tested["test/nll_uncalibrated"], rel=1e-3)  # the loss is the raw NLL
