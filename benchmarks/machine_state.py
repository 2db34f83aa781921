"""How busy the machine was around a benchmark: load averages, and the other work's share of
the CPUs just before it starts (the benchmarks record both; a speed figure counts only when
nothing else ran)."""

import os
import subprocess
import time

# A load average (1 min) above this before the run means another process was using the CPUs.
SHARED_LOAD = 0.5
# More than this fraction of the CPUs busy just before the run (`cpu_busy`): the same, measured now.
SHARED_BUSY = 0.1


def load_average():
    """(1, 5, 15-minute load averages, `uptime`'s line)."""
    try:
        line = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        line = ""
    return {"load": [round(x, 2) for x in os.getloadavg()], "uptime": line}


def cpu_busy(seconds=2.0):
    """The fraction of all CPUs' time that was not idle during `seconds` while this process
    slept: the other work on the machine now (`/proc/stat`; None where it cannot be read).
    Unlike the load average, it does not remember the minute before (e.g. another benchmark
    that just ended)."""
    def totals():
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait

    try:
        total0, idle0 = totals()
        time.sleep(seconds)
        total1, idle1 = totals()
    except (OSError, ValueError, IndexError):
        return None
    return round(1.0 - (idle1 - idle0) / max(total1 - total0, 1e-9), 3)


def machine_before():
    """The load average and what else used the CPUs just before a benchmark starts."""
    return {**load_average(), "cpu_busy": cpu_busy()}


def was_shared(before):
    """Whether other work was using the CPUs when the benchmark started: over `SHARED_BUSY` of
    the CPU time busy (or, where that cannot be read, a 1-minute load above `SHARED_LOAD`)."""
    if before.get("cpu_busy") is not None:
        return before["cpu_busy"] > SHARED_BUSY
    return before["load"][0] > SHARED_LOAD
