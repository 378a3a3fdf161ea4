"""The benchmarks (benchmarks/) run end to end on real data, and the fast-path pieces they rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_nets.models import CNNClassifier

REPO = Path(__file__).resolve().parents[2]


# slow: a timing tool run end to end (minutes of CI for figures nobody reads there); the synthetic run below
# keeps the script in the fast suite. pytest -m slow runs it.
@pytest.mark.slow
def test_benchmark_script_times_all_three_runs_on_the_wine_sample(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "loops.py"),
            "--task",
            "mlp",
            "--threads",
            "1",
            "--epochs",
            "3",
            "--repeat",
            "1",
            "--interleave",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| A: seed's plain loop |" in proc.stdout and "| C: lit_nets fit |" in proc.stdout
    assert "throughput C/A = " in proc.stdout and "epoch C/B, one process = " in proc.stdout
    result = json.loads(out.read_text())
    assert result["machine"]["torch"] == torch.__version__
    (mlp,) = result["results"]
    runs = {r["run"][0]: r for r in mlp["runs"]}
    assert set(runs) == {"A", "B", "C"} and mlp["C/A"] > 0 and mlp["C/B"] > 0
    assert mlp["epoch C/B, one process"] > 0 and len(mlp["epoch C/B, one process each"]) == 1  # B beside C's epochs
    for run in runs.values():
        assert len(run["epoch_samples_per_s"]) == 3 and run["samples_per_s"] > 0 and run["peak_mb"] > 50
        assert run["test_acc"] >= 0.6, run  # 3 epochs on wine: well above the 0.40 of the largest class
        assert run["threads"] == "1", run  # A, B and C alike: C's from its fit's Threads: line


def test_compile_keeps_the_checkpoint_names() -> None:
    plain = CNNClassifier(num_classes=10, input_shape=[1, 28, 28])
    compiled = CNNClassifier(num_classes=10, input_shape=[1, 28, 28], compile=True)
    compiled.configure_model()
    assert list(compiled.state_dict()) == list(plain.state_dict())


def test_benchmark_synthetic_option_runs_a_and_b(tmp_path: Path) -> None:
    """``--synthetic N`` (the GPU example of docs/benchmarks.md) times A and B on random MNIST-shaped images: the
    accuracy of a model trained on random labels is chance, which shows the synthetic data was used."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "loops.py"),
            "--task",
            "cnn",
            "--runs",
            "A",
            "B",
            "--synthetic",
            "600",
            "--threads",
            "1",
            "--epochs",
            "1",
            "--repeat",
            "1",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (cnn,) = json.loads(out.read_text())["results"]
    assert cnn["data"] == "synthetic MNIST-shaped data"
    runs = {r["run"][0]: r for r in cnn["runs"]}
    assert set(runs) == {"A", "B"}
    for run in runs.values():
        assert run["samples_per_s"] > 0 and run["test_acc"] < 0.3, run  # random labels: about 0.1
        assert run["threads"] == "1", run  # each run says its threads (1 here: 2 beside a busy worker would crawl)


@pytest.mark.slow  # as above
def test_benchmark_data_dir_trains_on_the_mnist_files_there(tmp_path: Path, sample) -> None:
    """``--data_dir`` points the runs at an MNIST folder (the full set in ../shared/data): here a 2,000 + 500 digit
    set written as idx files, so the data source, the sizes and the trained accuracy show it was used. A and C: B
    trains on the very tensors A's data set is made from (both come from ``build``), C reads the folder itself."""
    from helpers.cli import write_idx

    images, labels = sample
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))  # the sample is sorted by class
    images, labels = images[order], labels[order]
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    write_idx(raw, "train", images[:2000, 0], labels[:2000], gzipped=False)
    write_idx(raw, "t10k", images[2000:2500, 0], labels[2000:2500], gzipped=False)
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "loops.py"),
            "--task",
            "cnn",
            "--data_dir",
            str(tmp_path / "mnist"),
            "--runs",
            "A",
            "C",
            "--epochs",
            "2",
            "--repeat",
            "1",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (cnn,) = json.loads(out.read_text())["results"]
    assert cnn["data"].startswith("MNIST (torchvision"), cnn["data"]
    runs = {r["run"][0]: r for r in cnn["runs"]}
    assert set(runs) == {"A", "C"}
    for run in runs.values():
        assert run["test_acc"] >= 0.7, run  # 2 epochs on 2,000 digits; chance is 0.1


@pytest.fixture
def harness():
    """benchmarks/harness.py, imported as the scripts import it (their folder on the path)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import harness

        yield harness
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_benchmarks_stack_configs_as_the_cli_does(harness, tmp_path: Path, monkeypatch) -> None:
    """A config given after the task's overrides it by the CLI's rules: diamonds.yaml's data module, model arguments
    and epochs over mlp.yaml's (batches of 16,384 rows, each 64 optimiser steps of 256: model.step_batch_size),
    a seed given on the line decides the initial weights as fit's would (the same seed twice: the same weights)."""
    monkeypatch.chdir(tmp_path)
    configs = [str(REPO / "configs" / "mlp.yaml"), str(REPO / "configs" / "diamonds.yaml")]
    assert harness.config_value(configs, "trainer.max_epochs") == 100
    assert harness.config_value(configs, "early_stopping.init_args.patience") == 5
    dm, model = harness.build(configs, ["--seed_everything=3"])
    assert dm.batch_size == 16384 and tuple(dm.splits.train[0].shape) == (35062, 22)
    assert list(model.hparams.hidden) == [64, 32] and model.hparams.lr == 0.003 and model.hparams.step_batch_size == 256
    _, again = harness.build(configs, ["--seed_everything=3"])
    _, other = harness.build(configs, ["--seed_everything=4"])
    first = next(model.net.parameters())
    assert torch.equal(first, next(again.net.parameters()))
    assert not torch.equal(first, next(other.net.parameters()))


def test_boosting_benchmark_fits_on_the_mlps_rows(harness, tmp_path: Path, monkeypatch, capsys) -> None:
    """``benchmarks/boosting.py`` on wine (mlp.yaml): the booster sees the MLP's 115 training rows of 13 inputs and
    scores the 36 test rows as well as gradient boosting does on wine (above 0.85; chance is 0.40)."""
    monkeypatch.chdir(tmp_path)
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import boosting

        result = boosting.main([])
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert result["rows"] == 115 and result["test_acc"] > 0.85, result
    assert "| G: gradient boosting | 115 |" in capsys.readouterr().out


@pytest.mark.slow  # three fresh processes reading generated tables: seconds of figures nobody reads in CI
def test_csv_loading_benchmark_reads_a_quarter_half_and_all(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "csv_loading.py"), "--rows", "8000", "--columns", "16"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| 2,000 |" in proc.stdout and "| 4,000 |" in proc.stdout and "| 8,000 |" in proc.stdout


@pytest.mark.slow  # as above
def test_stream_benchmark_times_the_photo_loader_streamed_and_in_memory(tmp_path: Path) -> None:
    """``benchmarks/photo_loader.py`` (docs/benchmarks.md's photo loader figures) on 40 photos at 64 px."""
    out = tmp_path / "stream.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "photo_loader.py"),
            "--images",
            "40",
            "--size",
            "64",
            "--workers",
            "0",
            "1",
            "--repeat",
            "1",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["path"], r["workers"]) for r in rows] == [("streamed", 0), ("streamed", 1), ("in memory", 0)]
    assert all(r["images_per_s"] > 0 for r in rows) and "| streamed | 1 |" in proc.stdout


@pytest.mark.slow  # seconds of start-ups for figures nobody reads in CI; test_quick_answers.py proves the property
def test_startup_benchmark_times_the_quick_answers_beside_lightnings_import(tmp_path: Path) -> None:
    """``benchmarks/startup.py`` (docs/benchmarks.md's start-up table), one run of each command."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "startup.py"), "--repeat", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| `")]
    assert len(rows) == 7 and rows[0].startswith('| `python -c "import lightning"` |') and rows[0].endswith("1.00x |")
    assert "| `python -m lit_nets fitt (mistyped)` |" in proc.stdout


def predict_memory(tmp_path: Path, rows: list[int]) -> list[dict]:
    """``benchmarks/predict_memory.py`` on files of ``rows`` diamonds, with a checkpoint of one epoch (3 batches)."""
    from helpers.cli import CONFIGS, fit_for_fixture

    fit_for_fixture(tmp_path, "--config", str(CONFIGS / "diamonds.yaml"), "--trainer.max_epochs", "1",
                    "--trainer.limit_train_batches", "20", "--test_after_fit", "false")  # fmt: skip
    ckpt = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import predict_memory as bench
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return bench.main(["--rows", *map(str, rows), "--ckpt", str(ckpt), "--work", str(tmp_path)])


@pytest.mark.slow  # tests/integration/test_api.py checks the streamed predictions themselves
def test_predict_memory_benchmark_predicts_each_file(tmp_path: Path, capsys) -> None:
    results = predict_memory(tmp_path, [2_000, 20_000])
    assert [r["rows"] for r in results] == [2_000, 20_000] and all(r["peak"] > 1e8 for r in results)
    assert "| 20,000 |" in capsys.readouterr().out
    written = tmp_path / "lightning_logs" / "version_0" / "rows_20000.predictions.csv"
    assert sum(1 for _ in written.open()) == 20_001


@pytest.mark.slow
def test_predict_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    """Ten times the rows, the same peak memory within 10% (measured 1M and 10M in docs/benchmarks.md)."""
    small, large = predict_memory(tmp_path, [200_000, 2_000_000])
    assert large["peak"] <= small["peak"] * 1.1, (small, large)


def test_a_b_and_c_get_the_threads_asked_for(harness) -> None:
    """``loops.py --threads N`` reaches A's and B's build and C's command alike (the options all three get): left to
    the CLI's automatic rule, B built right after a run got 1 thread for all its epochs while C's fit went back to 2."""
    import argparse

    import loops

    given = argparse.Namespace(seed=None, batch_size=None, data_dir=None, sample=False, table=None, threads=3)
    assert "--threads=3" in loops.overrides(given)


def test_c_is_compared_with_the_run_beside_it(harness) -> None:
    """A slow spell of the machine (the second repeat here) hits B and C of one repeat alike: the ratio is taken
    repeat by repeat, then the median (1.2). The ratio of the two columns' medians would read 1.3."""
    import loops

    b = [{"samples_per_s": s, "epoch_s": e} for s, e in [(1000, 0.10), (500, 0.20), (1000, 0.10)]]
    c = [{"samples_per_s": s, "epoch_s": e} for s, e in [(900, 0.12), (450, 0.24), (800, 0.13)]]
    found = loops.ratios(c, b, "B")
    assert found["epoch C/B"] == pytest.approx(1.2) and found["epoch C/B each"] == pytest.approx([1.2, 1.2, 1.3])
    assert found["C/B"] == pytest.approx(0.9)
    assert "epoch C/A" not in loops.ratios(c, [{"samples_per_s": 1000, "epoch_s": None}] * 3, "A")  # images: no epoch


def test_plain_epochs_run_beside_the_fit_from_its_weights(harness, tmp_path: Path, monkeypatch) -> None:
    """``loops.py --interleave``: inside a fit, an epoch of the plain loop before each of the fit's, from the fit's
    initial weights; both clocked per epoch."""
    import beside

    from lit_nets.train import runs

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "beside.json"
    probe = beside.PlainEpochsBeside(str(out))
    args = ["--config", str(REPO / "configs" / "mlp.yaml"), "--trainer.max_epochs=3", "--threads=1"]
    runs.fit([*args, "--trainer.enable_progress_bar=false", "--test_after_fit=false"], callbacks=[probe])
    found = json.loads(out.read_text())
    assert len(found["plain"]) == len(found["fit"]) == 3 and min(found["plain"] + found["fit"]) > 0
    assert found["plain_acc"] > 0.6  # B trained: wine's largest class is 0.40
    start = torch.load(out.with_suffix(".start.ckpt"), weights_only=False)["state_dict"]
    _, initial = harness.build([str(REPO / "configs" / "mlp.yaml")], ["--threads=1"])  # the same seed: C's start
    weights = [k for k in initial.state_dict() if k.startswith("net")]
    assert all(torch.equal(start[k], initial.state_dict()[k]) for k in weights)
    assert not all(torch.equal(start[k], probe.loop.model.state_dict()[k]) for k in weights)  # B's own steps
