"""Peak resident memory of one phase of a process (Linux), for the benchmarks' rows.

`reset()` clears the kernel's high-water mark of this process's resident set
(``echo 5 > /proc/self/clear_refs``, Linux 4.0 and later) and `peak_mb()` reads it
back (``VmHWM`` of ``/proc/self/status``), so a phase between the two calls gets its
own peak: the training of the agent, then of each CNN, in one benchmark process.
The figure is the whole process's (the data set in memory, TensorFlow's runtime and
the model), as a user's `top` would show it.  Elsewhere both return None.
"""

from __future__ import annotations

from pathlib import Path

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


def reset() -> bool:
    """Start a new phase: clear the peak resident set; False where the system cannot."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_mb() -> float | None:
    """The peak resident set since the last `reset` (or the process start), in MiB, or None."""
    try:
        status = STATUS.read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)  # kB
    return None
