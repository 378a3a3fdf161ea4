"""Process-wide settings that make CPU training faster; :func:`tune` applies the first two (the CLI does, first
thing), :func:`freeze_heap` the third.

All three are written by hand: no library we use sets them for us.

1. **Keep freed memory** (Linux with glibc). PyTorch's CPU tensors come from ``malloc``. By default glibc hands
   the free space at the top of its heap back to the kernel once it passes ``M_TRIM_THRESHOLD`` (128 KiB to a few
   MiB) and serves large blocks with their own ``mmap``. A training step frees its activations and the next step
   allocates them again, so every step faults all of them back in, page by page: for the seed CNN on our 2-core
   VM ~4,000 page faults per step and ~20% of the CPU time in the kernel. Raising both thresholds keeps that memory
   in the process (peak memory is unchanged; the process just does not shrink after its peak): 2,200 → 3,100
   images/s for the seed CNN's plain loop (docs/benchmarks.md). PyTorch's CPU tuning guide gets the same with
   jemalloc or tcmalloc through ``LD_PRELOAD``; these two ``mallopt`` calls need no other library.
2. **A cheap "is there a GPU?"**. Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` so that asking does not
   initialise CUDA before DataLoader workers fork. With a CUDA build of torch on a machine without a GPU, each
   ``torch.cuda.is_available()`` then tries to load the NVML library and fails, ~70 µs a call, and torch's
   optimisers ask on every step (``_accelerator_graph_capture_health_check``): ~0.2 ms a step here. With no GPU
   there is nothing for a fork to poison, so we drop the variable and torch's own check answers from its cache.
3. **No full garbage collections of the start-up objects** (:func:`freeze_heap`). Importing Lightning, torch and
   jsonargparse leaves ~500,000 objects in the process, and each full collection of Python's cyclic garbage
   collector walks all the objects alive: 7 of them while importing (0.6 s in all here), then one every few epochs
   from the objects each training step makes (0.2 s each, a fifth of an epoch of the offline sample). ``python -m
   lit_nets`` imports with the collector off and then freezes what it imported (``gc.freeze()``: out of the
   collector's reach, alive as long as the process anyway); the CLI freezes again just before a run's loop
   starts, after the model and data are built. Later objects are collected as before.

``LIT_NETS_TUNE=0`` leaves the process as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's largest allowed value on 64-bit machines (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: 2 GiB of free heap top before any is given back

_done = False


def tune() -> None:
    """Apply both settings once per process (no-op when ``LIT_NETS_TUNE=0``)."""
    global _done
    if _done or os.environ.get("LIT_NETS_TUNE") == "0":
        return
    _done = True
    keep_freed_memory()
    cheap_cuda_check()


def freeze_heap() -> None:
    """Put every object alive now out of reach of the garbage collector's full collections (no-op when
    ``LIT_NETS_TUNE=0``); call it when start-up is over, just before a long loop."""
    if os.environ.get("LIT_NETS_TUNE") != "0":
        gc.freeze()


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse; True if it took the settings."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    # a fixed mmap threshold also stops glibc's own adjusting of it
    ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    log.debug("mallopt: keep freed memory: %s", ok)
    return ok


def give_back_freed_memory() -> bool:
    """The opposite of :func:`keep_freed_memory`, for a long-running service: blocks of 1 MiB and more get their own
    ``mmap`` (returned to the kernel when freed) and the heap is trimmed past 128 KiB of free space at its top. With
    glibc's default, which raises its mmap threshold after the first large block is freed, 48 concurrent 4 MB
    uploads left the service's API process 400 MB larger for good. True if glibc took the settings."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(M_TRIM_THRESHOLD, 128 << 10) == 1 and mallopt(M_MMAP_THRESHOLD, 1 << 20) == 1


def cheap_cuda_check() -> None:
    """Without a GPU, let ``torch.cuda.is_available()`` answer from torch's cache instead of NVML each time."""
    import torch

    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and not torch.cuda.is_available():
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]
