"""torch's threads follow the CPU share (lit_nets.core.threads): a cgroup quota (v2 and v1), the cores other processes
keep busy, the user's number, and the processes of one command on a machine."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from lit_nets.core import threads
from lit_nets.core.errors import UserError


def cgroup(tmp_path: Path, v2: str | None = None, v1: tuple[int, int] | None = None) -> Path:
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2 + "\n")
    if v1 is not None:
        (tmp_path / "cpu").mkdir()
        (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(f"{v1[0]}\n")
        (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(f"{v1[1]}\n")
    return tmp_path


@pytest.mark.parametrize(
    ("v2", "v1", "cores"),
    [
        ("150000 100000", None, 1.5),  # docker --cpus 1.5 (cgroup v2)
        ("max 100000", None, None),  # no quota
        (None, (250000, 100000), 2.5),  # cgroup v1
        (None, (-1, 100000), None),  # v1 without a quota
        (None, None, None),  # no cgroup files at all
    ],
)
def test_the_cgroup_quota_in_cores(tmp_path: Path, v2, v1, cores) -> None:
    assert threads.quota(cgroup(tmp_path, v2, v1)) == cores


def test_the_share_is_the_affinity_capped_by_the_quota_less_the_busy_cores(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(threads, "affinity", lambda: 8)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    free = tmp_path / "none"
    free.mkdir()
    words = "8 cores this process may use, other processes keep {} of the host's 8 busy (load average)"
    assert threads.share(load=0.0, root=free) == (8, words.format("0.0"))
    assert threads.share(load=5.2, root=free) == (3, words.format("5.2"))  # others keep 5 busy
    assert threads.share(load=30.0, root=free)[0] == 1  # at least one
    (tmp_path / "q").mkdir()
    quota = threads.share(load=0.0, root=cgroup(tmp_path / "q", "250000 100000"))
    assert quota == (2, "2 cores this process may use (cgroup quota 2.5), other processes keep 0.0 of the host's 8 "
                        "busy (load average)")  # fmt: skip


def test_the_users_number_wins_and_a_share_is_divided_between_processes(monkeypatch) -> None:
    for name in ("LIT_NETS_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "share", lambda: (4, "affinity 4"))
    monkeypatch.setattr(threads, "cores_usable", lambda: (4, []))
    assert threads.choose() == (4, "the CPU share: affinity 4")
    assert threads.choose(processes=2) == (2, "the CPU share: affinity 4; 2 processes")
    assert threads.choose(processes=8)[0] == 1
    assert threads.choose(threads=3, processes=2) == (3, "--threads")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.choose() == (2, "OMP_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "3,1")  # OpenMP's nested form: the outer level
    assert threads.choose() == (3, "OMP_NUM_THREADS")
    monkeypatch.setenv("LIT_NETS_THREADS", "1")
    assert threads.choose() == (1, "LIT_NETS_THREADS")


@pytest.mark.parametrize(
    ("threads_option", "variable", "said"),
    [
        (0, None, "--threads 0: give a positive whole number of threads, or leave it out (automatic)"),
        (-1, None, "--threads -1: give a positive whole number"),
        (None, "abc", "LIT_NETS_THREADS='abc': give a positive whole number of threads, or unset it (automatic)"),
        (None, "0", "LIT_NETS_THREADS='0': give a positive whole number"),
    ],
)
def test_what_is_not_a_positive_number_is_refused(monkeypatch, threads_option, variable, said) -> None:
    """0, -1 and 'abc' silently meant "automatic"."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if variable is None:
        monkeypatch.delenv("LIT_NETS_THREADS", raising=False)
    else:
        monkeypatch.setenv("LIT_NETS_THREADS", variable)
    with pytest.raises(UserError, match=re.escape(said)):
        threads.choose(threads_option)


def test_more_threads_than_cores_are_capped_and_said(monkeypatch) -> None:
    """LIT_NETS_THREADS=1000 ran 1,000 threads."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("LIT_NETS_THREADS", "1000")
    monkeypatch.setattr(threads, "affinity", lambda: 2)
    assert threads.choose() == (2, "LIT_NETS_THREADS 1000, capped at the 2 cores this process may use")
    assert threads.choose(5) == (2, "--threads 5, capped at the 2 cores this process may use")


def test_the_load_is_looked_at_again_as_the_run_goes(monkeypatch) -> None:
    """Over each window (at least 5 s of training), the host's busy time less this process's own is what the others
    keep busy: the threads follow it both ways."""
    clock = iter([0.0, 6.0, 12.0, 14.0, 20.0])
    host = iter([(0, 0), (0, 1200), (0, 2400), (150, 3000)])  # idle, total ticks
    own = iter([0.0, 6.0, 18.0, 30.0])  # CPU seconds of this process: 1, 2, then 1.5 cores
    monkeypatch.setattr(threads.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(threads, "cpu_times", lambda: next(host))
    monkeypatch.setattr(threads, "own_cpu", lambda: next(own))
    monkeypatch.setattr(threads, "affinity", lambda: 2)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    watch = threads.LoadWatch(2, root=Path("/nonexistent"))
    assert watch.look() == 1 and watch.others == pytest.approx(1.0)  # none idle, we used 1 of 2: others keep 1
    assert watch.look() == 2 and watch.others == pytest.approx(0.0)  # none idle, we used both: others none
    assert watch.look() is None, "2 s since the last look: too short to tell"
    assert watch.look() is None and watch.others == pytest.approx(0.0), "unchanged: nothing said"


def test_the_load_average_is_read_from_the_host(tmp_path: Path) -> None:
    assert (threads.load_average() or 0.0) >= 0.0
    file = tmp_path / "loadavg"
    file.write_text("1.25 0.80 0.50 2/300 12345\n")
    assert threads.load_average(file) == 1.25
    assert threads.load_average(tmp_path / "missing") is None
