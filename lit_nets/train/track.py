"""``python -m lit_nets track RUN``: send a run folder to MLflow, all of it or what the tracking server missed.

A run tracked with ``configs/mlflow.yaml`` whose server stopped answering goes on without it (its summary says so);
this command sends, once the server answers, what the run's MLflow run lacks: the config's parameters, the metric
points of the run's TensorBoard events that MLflow does not have (compared step by step), the figures, tables and
``config.yaml``, and the best checkpoint. A run trained without MLflow gets a new MLflow run the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lit_nets.core.errors import UserError, shown_url
from lit_nets.train.callbacks import tracking as tracked
from lit_nets.train.callbacks.tracking import RUN_FILE, SENT, client, experiment_id, experiment_name, host_tags, probe

BATCH = 1000  # metric points per request (MLflow's log_batch takes up to 1,000)


def track_command(runs: list[Path], tracking_uri: str | None = None) -> None:
    """Send run folders to MLflow: what the tracking server missed (it stopped answering during the run), or the
    whole run when it was trained without MLflow.

    Args:
        runs: run folders, e.g. lightning_logs/version_3.
        tracking_uri: the tracking server (default: the run's mlflow.tracking_uri, else MLFLOW_TRACKING_URI, else
            ./mlruns).
    """
    for run in runs:
        send_run(Path(run), tracking_uri)


def send_run(folder: Path, tracking_uri: str | None) -> None:
    """One run folder to MLflow (:func:`track_command`)."""
    from lit_nets.core.checkpoint_files import is_training

    if not (folder / "config.yaml").is_file():
        raise UserError(f"track {folder}: not a run folder (no config.yaml in it)")
    if is_training(folder):
        raise UserError(f"track {folder}: the run is being trained right now; send it when it has ended")
    config = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    options = config.get("mlflow") or {}
    uri = tracked.tracking_uri(tracking_uri or options.get("tracking_uri"))
    mlflow = client(uri)
    probe(uri)
    run_id = mlflow_run(mlflow, folder, options)
    params = send_params(mlflow, run_id, config)
    points, total = send_metrics(mlflow, run_id, folder)
    files = send_files(mlflow, run_id, folder)
    mlflow.set_terminated(run_id, "FINISHED")
    print(
        f"track: {folder} -> run {run_id} of experiment {experiment_name(options)} in {shown_url(uri)}: "
        f"{points} of {total} metric points, {params} parameters and {len(files)} files were missing and are sent"
        + (f" ({', '.join(files)})" if files else "")
    )


def mlflow_run(mlflow: Any, folder: Path, options: dict[str, Any]) -> str:
    """The MLflow run the folder records (``.mlflow_run``) when the server has it, else a new one (recorded)."""
    recorded = folder / RUN_FILE
    if recorded.is_file():
        try:
            return mlflow.get_run(recorded.read_text().strip()).info.run_id
        except Exception:  # another server's, or deleted: a new one
            pass
    experiment = experiment_id(mlflow, experiment_name(options))
    tags = {**host_tags(), "lit_nets.run_folder": str(folder.resolve()), **(options.get("tags") or {})}
    run_id = mlflow.create_run(experiment, run_name=options.get("run_name") or str(folder), tags=tags).info.run_id
    recorded.write_text(run_id + "\n")
    return run_id


def send_params(mlflow: Any, run_id: str, config: dict[str, Any]) -> int:
    """The config's values (as the run logs them: dotted paths, up to 250 characters) MLflow does not have."""
    from mlflow.entities import Param

    from lit_nets.core.private_api import mlflow_name_error
    from lit_nets.train.search_space import flatten

    (config.get("mlflow") or {}).pop("tags", None)  # the run's tags, not parameters
    values = flatten(config)
    values["config"] = ", ".join(str(p) for p in values.get("config") or [])
    if values.get("mlflow.tracking_uri"):
        values["mlflow.tracking_uri"] = shown_url(str(values["mlflow.tracking_uri"]))
    logged = mlflow.get_run(run_id).data.params
    new = [
        Param(k, str(v))
        for k, v in values.items()
        if len(str(v)) <= 250 and k not in logged and mlflow_name_error("param", k) is None
    ]
    for start in range(0, len(new), 100):
        mlflow.log_batch(run_id, params=new[start : start + 100])
    return len(new)


def send_metrics(mlflow: Any, run_id: str, folder: Path) -> tuple[int, int]:
    """The metric points of the run's TensorBoard events that MLflow lacks (by name and step): (sent, in all)."""
    from mlflow.entities import Metric
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    missing, total = [], 0
    for tag in events.Tags()["scalars"]:
        have = {m.step for m in mlflow.get_metric_history(run_id, tag)}
        for event in events.Scalars(tag):
            total += 1
            if event.step not in have:
                missing.append(Metric(tag, event.value, int(event.wall_time * 1000), event.step))
    for start in range(0, len(missing), BATCH):
        mlflow.log_batch(run_id, metrics=missing[start : start + BATCH])
    return len(missing), total


def send_files(mlflow: Any, run_id: str, folder: Path) -> list[str]:
    """The folder's figures, tables and config, and its best checkpoint (under ``checkpoints/``), that the MLflow
    run lacks: their names."""
    from lit_nets.core.checkpoint_files import best_checkpoint_of

    have = {Path(f.path).name for f in mlflow.list_artifacts(run_id)}
    have |= {Path(f.path).name for f in mlflow.list_artifacts(run_id, "checkpoints")}
    sent = []
    for path in sorted(folder.iterdir()):
        if path.suffix in SENT and path.is_file() and path.name not in have:
            mlflow.log_artifact(run_id, str(path))
            sent.append(path.name)
    last = sorted((folder / "checkpoints").glob("last*.ckpt"))
    best = best_checkpoint_of(last[-1]) if last else None
    if best is not None and best.name not in have:
        mlflow.log_artifact(run_id, str(best), "checkpoints")
        mlflow.set_tag(run_id, "lit_nets.best_checkpoint", f"checkpoints/{best.name}")
        sent.append(f"checkpoints/{best.name}")
    return sent
