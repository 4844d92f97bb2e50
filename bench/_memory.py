"""Peak memory of a block of code, for the benchmarks: CUDA's allocator peak, or on CPU the growth of the process's
peak RSS (Linux: VmHWM, which resource.getrusage's ru_maxrss reads, in KiB).

    out = {}
    with peak_memory(torch.device("cpu"), out):
        train()
    out  # {"peak_memory_mib": ..., "peak_memory_kind": ...}

    with cpu_peak_rss() as rss:        # CPU only, absolute figures too
        train()
    rss  # {"rss_before_mib", "peak_rss_mib", "peak_rss_growth_mib", "peak_rss_kind"}

On CPU the heap pages that earlier work freed are first given back to the OS (glibc malloc_trim), so they are not
counted in the RSS before the block and then reused unseen by it; the kernel's peak mark is then reset to the
current RSS through /proc/self/clear_refs ("5"). Where that is refused, the figures fall back to ru_maxrss over the
process's whole life (the growth is then a lower bound, said in the *_kind field).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

import torch

from alignops.memory import max_rss_kib, reset_peak_rss, rss_kib, trim_heap


@contextlib.contextmanager
def cpu_peak_rss() -> Iterator[dict]:
    """Yields a dict, filled on exit: rss_before_mib (after gc and trim), peak_rss_mib (the highest RSS during the
    block, absolute: what the process held, libraries included), peak_rss_growth_mib (peak - before: what the block
    added), peak_rss_kind."""
    out: dict = {}
    gc.collect()
    trim_heap()
    reset = reset_peak_rss()
    before = rss_kib() if reset else max_rss_kib()
    yield out
    peak = max_rss_kib()
    out["rss_before_mib"] = round(before / 1024, 1)
    out["peak_rss_mib"] = round(peak / 1024, 1)
    out["peak_rss_growth_mib"] = round(max(peak - before, 0) / 1024, 1)
    out["peak_rss_kind"] = (
        "ru_maxrss after resetting the peak (clear_refs) before the block"
        if reset
        else "ru_maxrss over the process's life (growth: a lower bound)"
    )


@contextlib.contextmanager
def peak_memory(device: torch.device, out: dict) -> Iterator[None]:
    """Fills out["peak_memory_mib"] and out["peak_memory_kind"] with the peak memory of the enclosed block: on CUDA
    torch.cuda.max_memory_allocated, on CPU the growth of the process's peak RSS (cpu_peak_rss)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        yield
        out["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        out["peak_memory_kind"] = "cuda max_memory_allocated"
        return
    with cpu_peak_rss() as rss:
        yield
    out["peak_memory_mib"] = rss["peak_rss_growth_mib"]
    out["peak_memory_kind"] = (
        "cpu peak RSS - RSS before (process)"
        if rss["peak_rss_kind"].startswith("ru_maxrss after")
        else "cpu ru_maxrss growth (process; lower bound)"
    )
