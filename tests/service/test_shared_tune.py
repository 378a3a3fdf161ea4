"""``tune`` with many workers on one study: ``--workers N`` processes, ``--storage`` a real PostgreSQL server (started
here in a temporary folder on a free port), a second "machine" (another folder) joining the study, a worker killed
mid-trial, and SIGTERM to the command. Every count is exact: a study of N trials records N (plus one failed record
per trial whose worker died)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path

import optuna
import pytest
from helpers.servers import PASSWORD, postgres, postgres_server
from helpers.tuning import DONE, finish, has_study, run_workers, shared_study, start, trials, wait_for
from optuna.trial import TrialState


@pytest.fixture(scope="module")
def database() -> str:
    with postgres() as url:
        yield url


def worker_command_lines(parent: int) -> list[str]:
    """The command lines of a process's children (``ps`` shows them to every user of the machine)."""
    lines = []
    for children in Path(f"/proc/{parent}/task").glob("*/children"):
        for pid in children.read_text().split():
            with contextlib.suppress(OSError):  # ended meanwhile
                lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return lines


def test_two_workers_finish_a_postgres_study_of_exactly_n_trials(database, tmp_path: Path) -> None:
    proc = start(tmp_path, "--storage", database, "--name", "two", "--trials", "4", "--workers", "2",
                 "--trainer.max_epochs", "4")  # fmt: skip
    seen: list[str] = []
    workers = lambda: [line for line in worker_command_lines(proc.pid) if "--worker " in line]  # noqa: E731
    wait_for(lambda: seen.extend(workers()) or len(seen) >= 2, "the workers", proc=proc)
    assert all(PASSWORD not in line and "--storage" not in line for line in seen), seen
    out = finish(proc)
    assert proc.returncode == 0, out[-3000:]
    study = trials(database, "two")
    assert len(study) == 4 and all(t.state in DONE for t in study), [t.state for t in study]
    assert len({t.user_attrs["worker"] for t in study}) == 2, "both workers ran trials"
    assert study[0].user_attrs["config_values"], "trial 0 is the config's own values"
    folder = tmp_path / "lightning_logs" / "tune" / "two"
    assert sorted(p.name for p in folder.glob("trial_*")) == [f"trial_{k}" for k in range(4)]
    assert all((folder / f"trial_{k}" / "config.yaml").exists() for k in range(4))
    assert (folder / "best.yaml").exists() and len((folder / "trials.csv").read_text().splitlines()) == 5
    assert "tune: 2 workers on this machine, 1 thread each" in out
    assert "Study two: 4 trials" in out and "study: two in postgresql://lit:***@127.0.0.1" in out
    assert PASSWORD not in out, "the storage URL's password is never printed"

    changed = start(tmp_path, "--storage", database, "--name", "two", "--trials", "4", "--trainer.max_epochs", "5")
    out = finish(changed)
    assert changed.returncode == 2 and "error: the study two in postgresql://lit:***@127.0.0.1" in out, out[-2000:]
    assert "holds a study with other settings (trainer.max_epochs 5, the study's 4)" in out
    assert len(trials(database, "two")) == 4, "nothing added"


def test_a_second_machine_joins_the_study_with_its_own_folder(database, tmp_path: Path) -> None:
    """Two commands in two folders (two machines without a shared disk), one study: 6 trials in all, each trial's
    run in the folder of the machine that ran it, no number twice."""
    args = ("--storage", database, "--name", "joined", "--trials", "6", "--pruner", "none", "--early_stopping",
            "null", "--trainer.max_epochs", "40")  # fmt: skip
    first = start(tmp_path / "a", *args)
    training = tmp_path / "a" / "lightning_logs" / "tune" / "joined" / "trial_0" / "checkpoints" / "last.ckpt"
    wait_for(training.exists, "the first command to train", proc=first)
    second = start(tmp_path / "b", *args)
    outs = finish(first), finish(second)
    assert first.returncode == 0 and second.returncode == 0, outs[0][-2000:] + outs[1][-2000:]
    study = trials(database, "joined")
    assert len(study) == 6 and all(t.state in DONE for t in study), "the second command added no trial"
    ran = {m: {int(p.name[6:]) for p in (tmp_path / m / "lightning_logs/tune/joined").glob("trial_*")} for m in "ab"}
    assert ran["a"] and ran["b"] and not ran["a"] & ran["b"] and ran["a"] | ran["b"] == set(range(6)), ran
    assert all((tmp_path / m / "lightning_logs/tune/joined/best.yaml").exists() for m in "ab")


def test_a_folder_of_another_study_is_refused(database, tmp_path: Path) -> None:
    """The embedded study mlp's folder, then a shared study named mlp from the same place: its trial runs would
    land among the other study's; one line, nothing trained."""
    (tmp_path / "lightning_logs" / "tune" / "mlp" / "trial_0").mkdir(parents=True)
    (tmp_path / "lightning_logs" / "tune" / "mlp" / "study.db").write_bytes(b"")
    proc = start(tmp_path, "--storage", database, "--trials", "2")
    out = finish(proc)
    assert proc.returncode == 2 and out.strip().splitlines()[-1] == (
        f"error: {Path('lightning_logs/tune/mlp')} holds an embedded study (study.db), not of the study mlp in this "
        "--storage: give --name for a folder of its own"
    ), out[-2000:]


def test_a_worker_killed_mid_trial_is_run_again_by_another(database, tmp_path: Path) -> None:
    """kill -9 of one of two workers while its trial trains: the other goes on, fails the silent trial after three
    heartbeats and runs it again with its parameters; the study still ends with 4 finished trials."""
    proc = start(tmp_path, "--storage", database, "--name", "killed", "--trials", "4", "--workers", "2",
                 "--pruner", "none", "--heartbeat", "1", "--trainer.max_epochs", "30")  # fmt: skip
    folder = tmp_path / "lightning_logs" / "tune" / "killed"

    def training() -> list[optuna.trial.FrozenTrial]:
        if not has_study(database, "killed"):
            return []
        running = [t for t in trials(database, "killed") if t.state == TrialState.RUNNING and "worker" in t.user_attrs]
        return [t for t in running if (folder / f"trial_{t.number}" / "checkpoints" / "last.ckpt").exists()]

    wait_for(training, "a trial to train an epoch", proc=proc)
    victim = training()[0]
    pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
    subprocess.run(["kill", "-9", str(pid)], check=True)
    out = finish(proc)
    assert proc.returncode == 0, out[-3000:]
    assert "was killed (signal 9); the others go on" in out, out[-5000:]
    study = trials(database, "killed")
    assert sum(t.state in DONE for t in study) == 4 and len(study) == 5, [t.state for t in study]
    failed = [t for t in study if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [victim.number]
    again = [t for t in study if t.system_attrs.get("failed_trial") == victim.number]
    assert len(again) == 1 and again[0].params == victim.params and again[0].state in DONE


def test_a_study_whose_only_worker_was_killed_is_completed_by_the_next_run(database, tmp_path: Path) -> None:
    """kill -9 of the whole command (one worker, in its process) while trial 1 trains: the trial stays RUNNING in
    the database. The same command again waits until its heartbeat is three beats old, fails it, runs it again with
    its parameters, and ends the study at 3 finished trials."""
    args = ("--storage", database, "--name", "rerun", "--trials", "3", "--pruner", "none", "--heartbeat", "1",
            "--early_stopping", "null", "--trainer.max_epochs", "15")  # fmt: skip
    proc = start(tmp_path, *args)
    training = tmp_path / "lightning_logs" / "tune" / "rerun" / "trial_1" / "checkpoints" / "last.ckpt"
    wait_for(training.exists, "trial 1 to train an epoch", proc=proc)
    proc.kill()
    finish(proc)
    before = trials(database, "rerun")
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.RUNNING], "trials are queued when taken"
    again = start(tmp_path, *args)
    out = finish(again)
    assert again.returncode == 0, out[-3000:]
    after = trials(database, "rerun")
    assert sum(t.state in DONE for t in after) == 3 and after[1].state == TrialState.FAIL and len(after) == 4
    assert after[2].params == before[1].params and after[2].system_attrs["failed_trial"] == 1


def test_four_processes_share_a_postgres_study_each_trial_once(database, tmp_path: Path) -> None:
    """tune's worker loop in four processes on one PostgreSQL study (no training): every trial taken once, exactly 30
    recorded, each queued when a worker was free to take it (under PostgreSQL's advisory lock)."""
    ran = run_workers(tmp_path, 4, 30, storage=database, name="four")
    assert sorted(ran) == list(range(30))
    study = shared_study(tmp_path, storage=database, name="four").study
    assert len(study.trials) == 30 and all(t.state == TrialState.COMPLETE for t in study.trials)


def test_a_second_command_with_other_settings_is_refused_before_any_trial_finished(database, tmp_path: Path):
    """The settings are recorded when the study is created: a second command with other settings is refused while
    the first command's trial 0 still trains (it was accepted then, and the study mixed 400-epoch trials with
    1-epoch ones)."""
    first = start(tmp_path / "a", "--storage", database, "--name", "early", "--trials", "2", "--pruner", "none",
                  "--early_stopping", "null", "--trainer.max_epochs", "400")  # fmt: skip
    folder = tmp_path / "a" / "lightning_logs" / "tune" / "early"
    wait_for((folder / "trial_0" / "checkpoints" / "last.ckpt").exists, "trial 0 to train an epoch", proc=first)
    second = start(tmp_path / "b", "--storage", database, "--name", "early", "--trials", "2", "--early_stopping",
                   "null", "--trainer.max_epochs", "1", "--data.val_fraction", "0.3")  # fmt: skip
    out = finish(second)
    assert second.returncode == 2 and "holds a study with other settings (data.init_args.val_fraction 0.3" in out
    assert "trainer.max_epochs 1, the study's 400" in out, out[-2000:]
    assert not list((tmp_path / "b" / "lightning_logs" / "tune" / "early").glob("trial_*"))
    assert [t.state for t in trials(database, "early")] == [TrialState.RUNNING], "nothing of the second's"
    first.send_signal(signal.SIGTERM)
    finish(first)


def test_a_database_stopped_mid_study_is_one_line_and_the_same_command_goes_on(tmp_path: Path) -> None:
    """PostgreSQL stopped (``pg_ctl stop -m immediate``) while a trial trains: the command ends with one line that
    says what happened and what to do (it was 7 chained tracebacks); once the server is back, the same command
    runs the interrupted trial again and completes the study."""
    with postgres_server() as server:
        args = ("--storage", server.url, "--name", "lost", "--trials", "2", "--pruner", "none", "--heartbeat", "1",
                "--early_stopping", "null", "--trainer.max_epochs", "60")  # fmt: skip
        proc = start(tmp_path, *args)
        training = tmp_path / "lightning_logs" / "tune" / "lost" / "trial_0" / "checkpoints" / "last.ckpt"
        wait_for(training.exists, "trial 0 to train an epoch", proc=proc)
        server.stop("immediate")
        out = finish(proc, timeout=120)
        assert proc.returncode == 2 and "Traceback" not in out, out[-3000:]
        last = out.strip().splitlines()[-1]
        assert last.startswith("error: tune: the study's database postgresql://lit:***@127.0.0.1:"), last
        assert "stopped answering (" in last and "trial 0 stays running there and goes on when you run the same " \
            "command again, once the database answers" in last, last  # fmt: skip
        assert PASSWORD not in out
        server.start()
        again = start(tmp_path, *args)
        out = finish(again)
        assert again.returncode == 0, out[-3000:]
        study = trials(server.url, "lost")
        assert sum(t.state in DONE for t in study) == 2 and study[0].state == TrialState.FAIL, [t.state for t in study]
        assert study[1].system_attrs["failed_trial"] == 0
