"""torch's intra-op threads sized to the CPU share this process may really use, not to the host's core count.

torch starts a thread per core it sees. Where a core is taken (a CPU quota below the host's core count, another
busy process, several training processes on one machine), its OpenMP threads wait for the one that is not running
at every parallel region: a tabular MLP's epoch took 1.62 s with 2 threads beside one busy Python process on our
2-core VM, against 0.27 s with 1 thread (and 0.29 s with 2 threads alone: its operations are too small to gain from
a second thread). So the share is, in this order:

1. ``--threads N`` (the CLI's option), or ``LIT_NETS_THREADS=N`` (every subcommand, and the processes a command
   starts), or ``OMP_NUM_THREADS=N`` (the variable torch itself reads): the user's number;
2. else the cores this process may run on (its CPU affinity), capped by a cgroup CPU quota (v2 ``cpu.max``, v1
   ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``: a container's ``--cpus``), less the cores other processes keep busy
   (the host's idle time over 0.1 s at start), at least 1;
3. divided by the processes of the command on this machine (DDP processes, the service's inference workers).

Written by hand: neither torch nor Lightning sizes threads to a quota or to the load (torch reads only
``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
SAMPLE = 0.1  # seconds of /proc/stat at start to see how many cores other processes keep busy


def affinity() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def quota(root: Path = CGROUP) -> float | None:
    """The cgroup's CPU quota in cores (v2 ``cpu.max``, else v1 CFS), None without one."""
    try:
        limit, period = (root / "cpu.max").read_text().split()[:2]
        return None if limit == "max" else int(limit) / int(period)
    except (OSError, ValueError):
        pass
    try:
        limit = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if limit <= 0 or period <= 0 else limit / period
    except (OSError, ValueError):
        return None


def idle_cores(seconds: float = SAMPLE, stat: Path = Path("/proc/stat")) -> float | None:
    """The host's cores left idle by other processes over ``seconds`` (this process sleeps meanwhile); None where
    there is no /proc/stat."""

    def times() -> tuple[int, int]:
        fields = [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]
        return fields[3] + fields[4], sum(fields[:8])  # idle + iowait, all but guest time (counted in user)

    try:
        idle0, total0 = times()
        time.sleep(seconds)
        idle1, total1 = times()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (idle1 - idle0) / (total1 - total0)


def given() -> tuple[int, str] | None:
    """The user's number of threads (``LIT_NETS_THREADS``, else ``OMP_NUM_THREADS``), if any."""
    for name in ("LIT_NETS_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value), name
    return None


def share(idle: float | None = None, root: Path = CGROUP) -> tuple[int, str]:
    """The cores this process may really use, and how that was found (for the log line)."""
    cores, why = affinity(), [f"affinity {affinity()}"]
    limit = quota(root)
    if limit is not None:
        cores = min(cores, max(1, math.floor(limit)))
        why.append(f"cgroup quota {limit:g}")
    idle = idle_cores() if idle is None else idle
    if idle is not None and round(idle) < cores:
        cores = max(1, round(idle))
        why.append(f"{idle:.1f} cores idle")
    return cores, ", ".join(why)


def choose(threads: int | None = None, processes: int = 1) -> tuple[int, str]:
    """The threads for each of ``processes`` processes of this command on this machine, and why."""
    if threads is not None and threads > 0:
        return threads, "--threads"
    user = given()
    if user is not None:
        return user[0], user[1]
    cores, why = share()
    each = max(1, cores // max(1, processes))
    return each, f"the CPU share: {why}" + (f"; {processes} processes" if processes > 1 else "")


def apply(threads: int) -> None:
    """Use ``threads`` intra-op threads here, and in the processes this one starts (``LIT_NETS_THREADS``)."""
    import torch

    torch.set_num_threads(threads)
    os.environ["LIT_NETS_THREADS"] = str(threads)
