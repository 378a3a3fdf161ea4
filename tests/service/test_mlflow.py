"""Runs tracked in a real MLflow tracking server (``mlflow server`` on a SQLite backend, started here on a free port),
read back through its REST API as any client reads them: a fit's parameters, metrics per epoch, test result, figures,
config and best checkpoint (byte for byte), and the same run continued by ``--ckpt_path last``; cv's folds and
tune's trials grouped under parent runs; and the CSV logger preset."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from helpers.cli import CONFIGS, in_process
from helpers.servers import mlflow_server

MLP = ("--config", str(CONFIGS / "mlp.yaml"))
TRACKED = ("--config", str(CONFIGS / "mlflow.yaml"))


@pytest.fixture(scope="module")
def server() -> str:
    with mlflow_server() as url:
        yield url


def api(server: str, method: str, endpoint: str, **body) -> dict:
    """One call of MLflow's REST API (``/api/2.0/mlflow/...``)."""
    url = f"{server}/api/2.0/mlflow/{endpoint}"
    reply = requests.get(url, params=body, timeout=30) if method == "GET" else requests.post(url, json=body, timeout=30)
    assert reply.ok, f"{endpoint}: {reply.status_code} {reply.text[:500]}"
    return reply.json()


def runs_of(server: str, experiment: str) -> dict[str, dict]:
    """The experiment's runs by name."""
    found = api(server, "GET", "experiments/get-by-name", experiment_name=experiment)["experiment"]
    runs = api(server, "POST", "runs/search", experiment_ids=[found["experiment_id"]], max_results=100)["runs"]
    return {r["info"]["run_name"]: r for r in runs}


def values(run: dict, kind: str) -> dict[str, str | float]:
    return {item["key"]: item["value"] for item in run["data"].get(kind, [])}


def artifacts(server: str, run_id: str, path: str = "") -> list[str]:
    listed = api(server, "GET", "artifacts/list", run_id=run_id, path=path).get("files", [])
    return [f["path"] for f in listed]


def test_a_fit_is_tracked_with_its_params_metrics_figures_and_best_checkpoint(server, tmp_path: Path) -> None:
    """The README's command as written (defaults on: test after fit, figures) with MLFLOW_TRACKING_URI set."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": server, "MLFLOW_EXPERIMENT_NAME": "fit"}

    def fit(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "lit_nets", "fit", *MLP, *TRACKED, *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    proc = fit("--trainer.max_epochs", "8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = runs_of(server, "fit")["lightning_logs/version_0"]
    run_id = run["info"]["run_id"]
    assert run["info"]["status"] == "FINISHED" and f"MLflow:       run {run_id} of experiment fit" in proc.stdout
    params, metrics, tags = values(run, "params"), values(run, "metrics"), values(run, "tags")
    assert params["model.init_args.lr"] == "0.003" and params["trainer.max_epochs"] == "8"
    assert params["data.class_path"] == "lit_nets.data.CSVDataModule"
    printed = float(re.search(r"test/acc ([\d.]+)", proc.stdout).group(1))
    assert metrics["test/acc"] == pytest.approx(printed, abs=1e-4) and printed >= 0.85
    history = api(server, "GET", "metrics/get-history", run_id=run_id, metric_key="val/loss")["metrics"]
    assert len(history) == 8, "a val/loss point per epoch"
    assert tags["lit_nets.run_folder"] == str(tmp_path / "lightning_logs" / "version_0")
    files = artifacts(server, run_id)
    assert {"config.yaml", "confusion_matrix_test.png", "per_class_test.csv", "checkpoints"} <= set(files), files
    best = next((tmp_path / "lightning_logs" / "version_0" / "checkpoints").glob("epoch*.ckpt"))
    assert artifacts(server, run_id, "checkpoints") == [f"checkpoints/{best.name}"], "the best checkpoint only"
    assert tags["lit_nets.best_checkpoint"] == f"checkpoints/{best.name}"
    got = requests.get(f"{server}/get-artifact", params={"path": f"checkpoints/{best.name}", "run_uuid": run_id})
    assert got.ok and hashlib.sha256(got.content).digest() == hashlib.sha256(best.read_bytes()).digest()
    assert (tmp_path / "lightning_logs" / "version_0" / "config.yaml").exists(), "TensorBoard's run folder as before"
    assert list((tmp_path / "lightning_logs" / "version_0").glob("events.out.tfevents.*"))

    resumed = fit("--trainer.max_epochs", "10", "--ckpt_path", "last")  # 2 epochs more: the same MLflow run goes on
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert list(runs_of(server, "fit")) == ["lightning_logs/version_0"], "one run, continued"
    history = api(server, "GET", "metrics/get-history", run_id=run_id, metric_key="val/loss")["metrics"]
    assert sorted(point["step"] for point in history) == sorted({p["step"] for p in history}) and len(history) == 10
    run = runs_of(server, "fit")["lightning_logs/version_0"]
    assert values(run, "params")["trainer.max_epochs"] == "8", "MLflow keeps a parameter's first value"
    assert "trainer.max_epochs" in values(run, "tags")["lit_nets.changed_on_resume"]


def test_cv_folds_and_tune_trials_are_grouped_under_parent_runs(server, tmp_path: Path, monkeypatch, capfd) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "groups")
    quick = ("--trainer.max_epochs", "3", "--trainer.enable_progress_bar", "false")
    folds = in_process("cv", *MLP, *TRACKED, "--folds", "2", *quick, cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert folds.returncode == 0, folds.stderr[-3000:]
    space = ("--space", str(CONFIGS / "search" / "mlp.yaml"))
    tuned = in_process("tune", *MLP, *TRACKED, *space, "--trials", "2", *quick, cwd=tmp_path, monkeypatch=monkeypatch,
                       capfd=capfd)  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    runs = runs_of(server, "groups")
    assert sorted(runs) == ["cv/mlp", "cv/mlp/fold_0", "cv/mlp/fold_1", "tune/mlp", "tune/mlp/trial_0",
                            "tune/mlp/trial_1"], "named by the config, not by the overlay"  # fmt: skip
    for parent, children in (("cv/mlp", ["cv/mlp/fold_0", "cv/mlp/fold_1"]),
                             ("tune/mlp", ["tune/mlp/trial_0", "tune/mlp/trial_1"])):  # fmt: skip
        parent_id = runs[parent]["info"]["run_id"]
        assert all(values(runs[c], "tags")["mlflow.parentRunId"] == parent_id for c in children)
        assert runs[parent]["info"]["status"] == "FINISHED"
    assert [values(runs[f"cv/mlp/fold_{k}"], "tags")["lit_nets.fold"] for k in (0, 1)] == ["0", "1"]
    assert values(runs["tune/mlp/trial_1"], "tags")["lit_nets.trial"] == "1"
    cv_metrics = values(runs["cv/mlp"], "metrics")
    fold_acc = [values(runs[f"cv/mlp/fold_{k}"], "metrics")["test/acc"] for k in (0, 1)]
    assert cv_metrics["test/acc_mean"] == pytest.approx(sum(fold_acc) / 2, abs=1e-6)
    assert {"results.csv", "oof_predictions.csv"} <= set(artifacts(server, runs["cv/mlp"]["info"]["run_id"]))
    study = runs["tune/mlp"]
    assert {"best.yaml", "trials.csv", "history.png"} <= set(artifacts(server, study["info"]["run_id"]))
    trial_losses = [values(runs[f"tune/mlp/trial_{k}"], "metrics")["val/loss"] for k in (0, 1)]
    assert values(study, "metrics")["best_val/loss"] <= max(trial_losses)


def test_the_csv_preset_writes_plain_metrics(tmp_path: Path, monkeypatch, capfd) -> None:
    csv = ("--config", str(CONFIGS / "csv.yaml"))
    proc = in_process(
        "fit", *MLP, *csv, "--trainer.max_epochs", "4", cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "lightning_logs" / "version_0"
    import pandas as pd

    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["val/acc"].notna().sum() == 4 and metrics["test/acc"].notna().sum() == 1
    assert not list(run.glob("events.out.tfevents.*")), "plain files instead of TensorBoard's"
    assert f"(metrics: {Path('lightning_logs/version_0/metrics.csv')})" in proc.stdout.replace("./", "")
    assert (run / "confusion_matrix_test.png").exists() and (run / "checkpoints" / "last.ckpt").exists()
