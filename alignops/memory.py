"""Peak memory of a block of work: the process's peak RSS (Linux VmHWM, which resource.getrusage's ru_maxrss reads,
in KiB) and, on a CUDA device, the allocator's peak. Each stage run logs its own (tracking.stage_run) as
sys/peak_rss_mib and sys/peak_cuda_mib; bench/_memory.py builds its measurements on the same calls.

    with peak_memory_mib() as out:
        train()
    out  # {"sys/peak_rss_mib": 3012.4, "sys/peak_cuda_mib": ...}

Before the block, freed heap pages are given back to the OS (glibc malloc_trim, about a millisecond) and the
kernel's peak mark is reset to the current RSS (/proc/self/clear_refs, "5"), so the figure is the block's own
peak, not an earlier stage's. Where the reset is refused (not Linux, a sandbox) the RSS figure is the process's
peak so far, and says so by its name: sys/process_peak_rss_mib.
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import resource
from collections.abc import Iterator


def rss_kib() -> int:
    """The process's resident set size now, KiB."""
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def max_rss_kib() -> int:
    """The process's peak RSS since start or the last reset_peak_rss(), KiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def trim_heap() -> None:
    """Give freed heap pages back to the OS (glibc malloc_trim); a no-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM, which ru_maxrss reads) to the current RSS; False where refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def peak_memory_mib() -> Iterator[dict[str, float]]:
    """Yields a dict filled on exit with the block's peak RSS, MiB (and the CUDA allocator's peak when a GPU is
    in use), under the metric names a stage run logs."""
    import torch

    out: dict[str, float] = {}
    trim_heap()  # no gc.collect(): the figure is the absolute peak, and a collection costs up to a second
    reset = reset_peak_rss()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()
    try:
        yield out
    finally:
        out["sys/peak_rss_mib" if reset else "sys/process_peak_rss_mib"] = round(max_rss_kib() / 1024, 1)
        if torch.cuda.is_available() and torch.cuda.is_initialized():  # CUDA first used inside the block too
            out["sys/peak_cuda_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
