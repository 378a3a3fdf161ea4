"""torch's intra-op threads sized to the CPU share this process may really use, not to the host's core count.

torch starts a thread per core it sees. Where a core is taken (a CPU quota below the host's core count, another
busy process, several training processes on one machine), its OpenMP threads wait for the one that is not running
at every parallel region: a tabular MLP's epoch took 1.62 s with 2 threads beside one busy Python process on our
2-core VM, against 0.27 s with 1 thread (and 0.29 s with 2 threads alone: its operations are too small to gain from
a second thread). So the share is, in this order:

1. ``--threads N`` (the CLI's option), or ``LIT_NETS_THREADS=N`` (every subcommand, and the processes a command
   starts), or ``OMP_NUM_THREADS=N`` (the variable torch itself reads): the user's number, a positive whole number
   (anything else is refused in one line), at most the cores this process may run on (more is capped, and said);
2. else the cores this process may run on (its CPU affinity), capped by a cgroup CPU quota (v2 ``cpu.max``, v1
   ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``: a container's ``--cpus``), less the cores other processes keep busy:
   at start the host's one-minute load average (a steady signal: a 0.1 s sample let one blip decide a whole run),
   then, while training, what the other processes used since the last look (:class:`LoadWatch`, each epoch, at
   most every 5 s), at least 1;
3. divided by the processes of the command on this machine (DDP processes, the service's inference workers).

Written by hand: neither torch nor Lightning sizes threads to a quota or to the load (torch reads only
``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from lit_nets.core.errors import UserError

CGROUP = Path("/sys/fs/cgroup")
WINDOW = 5.0  # seconds of training between two looks at the other processes' load


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


def load_average(path: Path = Path("/proc/loadavg")) -> float | None:
    """The host's one-minute load average (runnable tasks), None where there is none."""
    try:
        return float(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cores_usable(root: Path = CGROUP) -> tuple[int, list[str]]:
    """The cores this process may run on (affinity, capped by a cgroup quota), and the words that say so."""
    cores, why = affinity(), []
    limit = quota(root)
    if limit is not None and math.floor(limit) < cores:
        cores = max(1, math.floor(limit))
        why.append(f"cgroup quota {limit:g}")
    return cores, why


def given() -> tuple[int, str] | None:
    """The user's number of threads (``LIT_NETS_THREADS``, else ``OMP_NUM_THREADS``), if any; one line when it is not
    a positive whole number."""
    for name in ("LIT_NETS_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if not value:
            continue
        first = value.split(",")[0].strip() if name == "OMP_NUM_THREADS" else value  # OpenMP's nested list: "4,2"
        if not first.isdigit() or int(first) < 1:
            raise UserError(f"{name}={value!r}: give a positive whole number of threads, or unset it (automatic)")
        return int(first), name
    return None


def share(load: float | None = None, root: Path = CGROUP) -> tuple[int, str]:
    """The cores this process may really use, and how that was found (for the log line)."""
    cores, why = cores_usable(root)
    words = f"{cores} core{'s' if cores > 1 else ''} this process may use" + (f" ({why[0]})" if why else "")
    load = load_average() if load is None else load
    if load is None:
        return cores, words
    host = os.cpu_count() or 1
    busy = min(max(0.0, load), float(host))  # the load average counts this process's own start too: a small part
    free = max(1, min(cores, round(host - busy)))
    return free, f"{words}, other processes keep {busy:.1f} of the host's {host} busy (load average)"


def choose(threads: int | None = None, processes: int = 1) -> tuple[int, str]:
    """The threads for each of ``processes`` processes of this command on this machine, and why."""
    if threads is not None:
        if threads < 1:
            raise UserError(
                f"--threads {threads}: give a positive whole number of threads, or leave it out (automatic)"
            )
        return capped(threads, "--threads")
    user = given()
    if user is not None:
        return capped(*user)
    cores, why = share()
    each = max(1, cores // max(1, processes))
    return each, f"the CPU share: {why}" + (f"; {processes} processes" if processes > 1 else "")


def capped(threads: int, source: str) -> tuple[int, str]:
    """The user's number, at most the cores this process may run on (more threads only wait for each other)."""
    cores, _ = cores_usable()
    if threads <= cores:
        return threads, source
    return cores, f"{source} {threads}, capped at the {cores} cores this process may use"


def apply(threads: int) -> None:
    """Use ``threads`` intra-op threads here, and in the processes this one starts (``LIT_NETS_THREADS``)."""
    import torch

    torch.set_num_threads(threads)
    os.environ["LIT_NETS_THREADS"] = str(threads)


def cpu_times(stat: Path = Path("/proc/stat")) -> tuple[int, int] | None:
    """The host's idle and total CPU time (clock ticks) since boot, None where there is no /proc/stat."""
    try:
        fields = [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait, all but guest time (counted in user)


def own_cpu() -> float:
    """CPU seconds this process and its live children (data-loading workers) have used."""
    used = time.process_time()
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        try:
            pids = children.read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                used += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
            except (OSError, ValueError, IndexError):
                pass
    return used


class LoadWatch:
    """Looks again, as a run goes, at how many cores the other processes keep busy: from the host's CPU time less
    this process's own since the last look (at least :data:`WINDOW` seconds before), and gives the new number of
    threads when it changed."""

    def __init__(self, threads: int, root: Path = CGROUP) -> None:
        self.threads = threads
        self.cores, _ = cores_usable(root)
        self.others = 0.0
        self._mark(time.monotonic())

    def _mark(self, now: float) -> None:
        self.when, self.host, self.own = now, cpu_times(), own_cpu()

    def look(self) -> int | None:
        """The threads to use from now on when they differ from the current ones, else None."""
        now = time.monotonic()
        elapsed = now - self.when
        if elapsed < WINDOW:
            return None
        before, own_before = self.host, self.own
        self._mark(now)
        if before is None or self.host is None or self.host[1] <= before[1]:
            return None
        busy = (os.cpu_count() or 1) * (1 - (self.host[0] - before[0]) / (self.host[1] - before[1]))
        self.others = max(0.0, busy - (self.own - own_before) / elapsed)
        threads = max(1, min(self.cores, round(self.cores - self.others)))
        if threads == self.threads:
            return None
        self.threads = threads
        return threads
