"""torch's threads follow the CPU share (lit_nets.core.threads): a cgroup quota (v2 and v1), the cores other processes
keep busy, the user's number, and the processes of one command on a machine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lit_nets.core import threads


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
    free = cgroup(tmp_path / "none")
    (tmp_path / "none").mkdir(exist_ok=True)
    assert threads.share(idle=8.0, root=free) == (8, "affinity 8")
    assert threads.share(idle=3.2, root=free) == (3, "affinity 8, 3.2 cores idle")  # others keep 5 busy
    assert threads.share(idle=0.1, root=free)[0] == 1  # at least one
    (tmp_path / "q").mkdir()
    assert threads.share(idle=8.0, root=cgroup(tmp_path / "q", "250000 100000")) == (2, "affinity 8, cgroup quota 2.5")


def test_the_users_number_wins_and_a_share_is_divided_between_processes(monkeypatch) -> None:
    for name in ("LIT_NETS_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "share", lambda: (4, "affinity 4"))
    assert threads.choose() == (4, "the CPU share: affinity 4")
    assert threads.choose(processes=2) == (2, "the CPU share: affinity 4; 2 processes")
    assert threads.choose(processes=8)[0] == 1
    assert threads.choose(threads=3, processes=2) == (3, "--threads")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.choose() == (2, "OMP_NUM_THREADS")
    monkeypatch.setenv("LIT_NETS_THREADS", "1")
    assert threads.choose() == (1, "LIT_NETS_THREADS")


def test_idle_cores_come_from_the_hosts_cpu_times(tmp_path: Path) -> None:
    idle = threads.idle_cores(0.05)
    assert idle is not None and 0 <= idle <= (os.cpu_count() or 1) + 0.5
    still = tmp_path / "stat"
    still.write_text("cpu  100 0 50 800 10 0 0 0 0 0\n")
    assert threads.idle_cores(0.01, still) is None  # no time passed in the file: no answer rather than a guess
