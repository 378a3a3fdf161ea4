"""Runs tracked in a real MLflow tracking server (``mlflow server`` on a SQLite backend, started here on a free port),
read back through its REST API as any client reads them: a fit's parameters, metrics per epoch, test result, figures,
config and best checkpoint (byte for byte), and the same run continued by ``--ckpt_path last``; cv's folds and
tune's trials grouped under parent runs; and the CSV logger preset."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from helpers.cli import CONFIGS, in_process
from helpers.servers import mlflow_server, mlflow_tracking
from helpers.service import free_port

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


def test_a_tracking_server_that_does_not_answer_is_one_line_at_start(tmp_path: Path, monkeypatch, capfd) -> None:
    """Nothing listens on the port: one line before any epoch (it was 4 min 24 s of silence, then a traceback)."""
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    proc = in_process("fit", *MLP, *TRACKED, cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert (
        proc.stderr.strip().splitlines()[-1].startswith(f"error: mlflow: the tracking server {url} does not answer (")
        and "start it, or correct mlflow.tracking_uri / MLFLOW_TRACKING_URI" in proc.stderr
    )
    assert not list(tmp_path.glob("lightning_logs/*/checkpoints/*.ckpt")), "no epoch trained"


def test_a_server_lost_mid_run_costs_a_warning_and_track_sends_what_it_missed(tmp_path: Path) -> None:
    """The server killed after epoch 3 of 20: training goes on (it froze for about 5 minutes, then a traceback),
    the summary says what was not sent and how to send it; once the server is back, ``track`` sends it."""
    with mlflow_tracking() as server:
        env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, "MLFLOW_EXPERIMENT_NAME": "lost"}
        command = [sys.executable, "-m", "lit_nets", "fit", *MLP, *TRACKED, "--trainer.max_epochs", "20",
                   "--early_stopping", "null", "--trainer.enable_progress_bar", "false"]  # fmt: skip
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)  # fmt: skip

        def epochs_sent() -> int:
            try:
                run = runs_of(server.url, "lost")["lightning_logs/version_0"]
            except (AssertionError, KeyError, requests.RequestException):
                return 0
            history = api(server.url, "GET", "metrics/get-history", run_id=run["info"]["run_id"], metric_key="val/loss")
            return len(history.get("metrics", []))

        deadline = time.monotonic() + 300
        while epochs_sent() < 3:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0][-3000:]
            time.sleep(0.2)
        server.kill()
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0 and "Traceback" not in out, out[-3000:]
        assert "MLflow: the tracking server " + server.url + " stopped answering at step" in out
        summary = next(line for line in out.splitlines() if line.startswith("MLflow:       run "))
        assert "the server stopped answering at step" in summary and summary.endswith(
            f"python -m lit_nets track {Path('lightning_logs/version_0')}"
        ), summary
        assert "Test (best):  test/acc" in out, "the run completed: tested after fit"

        server.start()
        run_id = runs_of(server.url, "lost")["lightning_logs/version_0"]["info"]["run_id"]
        before = len(api(server.url, "GET", "metrics/get-history", run_id=run_id, metric_key="val/loss")["metrics"])
        assert 3 <= before < 20
        sent = subprocess.run([sys.executable, "-m", "lit_nets", "track", "lightning_logs/version_0"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert sent.returncode == 0, sent.stderr[-3000:]
        assert f"track: {Path('lightning_logs/version_0')} -> run {run_id} of experiment lost" in sent.stdout
        history = api(server.url, "GET", "metrics/get-history", run_id=run_id, metric_key="val/loss")["metrics"]
        assert sorted(p["step"] for p in history) == sorted({p["step"] for p in history}) and len(history) == 20
        files = artifacts(server.url, run_id)
        assert {"config.yaml", "confusion_matrix_test.png", "checkpoints"} <= set(files), files
        run = runs_of(server.url, "lost")["lightning_logs/version_0"]
        assert run["info"]["status"] == "FINISHED" and "test/acc" in values(run, "metrics")
        again = subprocess.run([sys.executable, "-m", "lit_nets", "track", "lightning_logs/version_0"], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert "0 of " in again.stdout and "0 parameters and 0 files were missing" in again.stdout, again.stdout


def test_a_password_in_the_tracking_uri_is_never_logged(server, tmp_path: Path, monkeypatch, capfd) -> None:
    """The password was masked in the summary but logged as a parameter and in both config.yaml files."""
    secret = server.replace("http://", "http://alice:topsecret@")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "secret")
    proc = in_process("fit", *MLP, *TRACKED, "--mlflow.tracking_uri", secret, "--trainer.max_epochs", "2",
                      cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "topsecret" not in proc.stdout + proc.stderr
    run = runs_of(server, "secret")["lightning_logs/version_0"]
    assert values(run, "params")["mlflow.tracking_uri"] == server.replace("http://", "http://alice:***@")
    saved = (tmp_path / "lightning_logs" / "version_0" / "config.yaml").read_text()
    assert "topsecret" not in saved and "alice:***@" in saved
    artifact = requests.get(f"{server}/get-artifact", params={"path": "config.yaml", "run_uuid": run["info"]["run_id"]})
    assert artifact.ok and "alice:***@" in artifact.text and "topsecret" not in artifact.text

    again = in_process("fit", "--config", str(tmp_path / "lightning_logs" / "version_0" / "config.yaml"),
                       "--trainer.logger.init_args.version", "again", cwd=tmp_path, monkeypatch=monkeypatch,
                       capfd=capfd)  # fmt: skip
    assert again.returncode == 2 and "the password was not saved with the run's config; give it in " \
        "MLFLOW_TRACKING_PASSWORD" in again.stderr, again.stderr[-2000:]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--mlflow.experiment", "x" * 600), "mlflow.experiment: MLflow refuses it ('name' exceeds the maximum length"),
        (
            ("--mlflow.tags", '{"bad key!": "x"}'),
            "mlflow.tags 'bad key!': MLflow refuses it (Invalid value \"bad key!\"",
        ),
    ],
)
def test_settings_mlflow_refuses_are_one_line(server, tmp_path: Path, monkeypatch, capfd, args, said) -> None:
    """A 600-character experiment name and a tag key MLflow refuses: one line each, before anything is trained (its
    server took the tag at the run's creation and refused it later)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    proc = in_process("fit", *MLP, *TRACKED, *args, cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {said}"), proc.stderr[-2000:]
    assert not list(tmp_path.glob("lightning_logs/*/checkpoints/*.ckpt"))


def test_the_suggested_mlflow_ui_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """The summary's ``view:`` command for local runs: ``mlflow ui`` alone left seven huey_consumer processes (its
    job runner) after SIGTERM; with the variable the summary sets, the one process started stops, and nothing stays."""
    import signal

    from lit_nets.train.callbacks.tracking import MLflowTracking

    (tmp_path / "mlruns").mkdir()
    tracking = MLflowTracking(enabled=True)
    tracking.resolved_uri = "sqlite:///mlruns/mlflow.db"
    tracking.logger = type("Logger", (), {"run_id": "0", "lost": None})()
    suggested = tracking.describe().split("; view: ", 1)[1]
    variable, command = suggested.split(" ", 1)
    name, value = variable.split("=")
    port = free_port()
    mlflow = str(Path(sys.executable).parent / "mlflow")
    argv = [mlflow if word == "mlflow" else word for word in command.split()] + ["--port", str(port)]
    proc = subprocess.Popen(argv, cwd=tmp_path, env={**os.environ, name: value}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "mlflow ui did not start"
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        time.sleep(1)
        left = [p for p in Path("/proc").glob("[0-9]*") if session_of(p) == proc.pid]
        assert not left, [(p / "cmdline").read_bytes() for p in left]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def session_of(process: Path) -> int | None:
    """The session id of a process (field 6 of /proc/PID/stat), None when it has gone."""
    try:
        return int(process.joinpath("stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, ValueError, IndexError):
        return None
