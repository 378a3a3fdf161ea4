"""How tune's workers share a study, on the real loop (:func:`lit_nets.train.tune_slots.work`) with an objective that
trains nothing: many processes on one SQLite study take every trial once and make exactly ``--trials``; a huge
``--trials`` starts at once; a late heartbeat of a live worker here is not a death, a dead worker's is; a worker
whose trial another declared dead drops it with a line. (The same on PostgreSQL: tests/service/test_shared_tune.py.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

from helpers.tuning import run_workers, shared_study
from optuna.trial import TrialState

from lit_nets.train import tune_slots


def test_six_processes_take_every_trial_once_and_make_exactly_the_total(tmp_path: Path) -> None:
    """Python's sqlite3 driver began a transaction only at the first write: two workers both read a trial WAITING
    and both took it (136 takes of 100 trials). Every take is one transaction now, and trials are queued one at a
    time under the study's lock."""
    ran = run_workers(tmp_path, 6, 40)
    assert sorted(ran) == list(range(40)), "each of the 40 trials run once, by one worker"
    trials = shared_study(tmp_path).study.trials
    assert len(trials) == 40 and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) > 1, "the work was shared"


def test_a_million_trials_start_at_once_and_leave_nothing_queued(tmp_path: Path) -> None:
    """Queueing all the trials up front took 9 hours for --trials 1000000; now a worker queues the next one when it
    is free to take it: the loop runs trials at once, and a stopped run leaves at most one queued."""
    shared = shared_study(tmp_path, trials=1_000_000, timeout=3)
    tune_slots.work(shared, lambda trial: 0.0, lambda study, frozen: None)
    trials = shared.study.trials
    assert sum(t.state == TrialState.COMPLETE for t in trials) >= 5
    assert sum(t.state == TrialState.WAITING for t in trials) <= 1


def age_heartbeat(shared: tune_slots.Shared, trial_id: int) -> None:
    """Record the trial's heartbeat, then wait until it is older than the grace period (3 beats of 1 s)."""
    shared.rdb.record_heartbeat(trial_id)
    time.sleep(3 * shared.options.heartbeat + 1.2)


def test_a_late_heartbeat_of_a_live_worker_here_is_not_a_death(tmp_path: Path, capsys) -> None:
    """A loaded machine's late heartbeat failed live trials, which then ran twice; a worker of this machine whose
    process lives keeps its trial. When the process is gone, the trial is failed and run again once."""
    shared = shared_study(tmp_path, heartbeat=1, trials=2)
    shared.study.enqueue_trial({"x": 1})
    trial = tune_slots.take(shared, 2)
    assert trial.suggest_int("x", 0, 5) == 1 and trial.user_attrs["worker"].endswith(f":{os.getpid()}")
    age_heartbeat(shared, trial._trial_id)
    tune_slots.fail_dead_trials(shared)
    assert shared.rdb.get_trial(trial._trial_id).state == TrialState.RUNNING, "this process is alive"

    trial.set_user_attr("worker", "elsewhere:4242")  # the same trial, as run by a worker of another machine
    tune_slots.fail_dead_trials(shared)
    trials = shared.study.trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].system_attrs["failed_trial"] == 0 and trials[1].params == {"x": 1}
    assert "tune: trial 0 (worker elsewhere:4242) has not beaten for 3 s: failed" in capsys.readouterr().err


def test_a_worker_whose_trial_was_declared_dead_drops_it_and_goes_on(tmp_path: Path, capsys) -> None:
    """Another machine failed this worker's running trial (its heartbeat came late): the worker learns so at the
    trial's next epoch (here: its next check), records nothing for it, says so, and runs the study's other trials."""
    shared = shared_study(tmp_path, heartbeat=1, trials=3)

    def objective(trial) -> float:
        if trial.number == 1:
            shared.rdb.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)  # what the other did
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                tune_slots.check(trial)  # the pruning callback's call at every epoch's end
                time.sleep(0.1)
            raise AssertionError("the heartbeat never noticed")
        return 1.0

    tune_slots.work(shared, objective, lambda study, frozen: None)
    states = [t.state for t in shared.study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    err = capsys.readouterr().err
    assert "tune: trial 1's heartbeat came over 3 s late, so another worker declared it dead" in err
    assert "A machine this busy needs a longer --heartbeat (now 1)" in err
