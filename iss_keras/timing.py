"""Interleaved timing: run candidates in turn so machine noise hits them alike."""

import time

import numpy as np


def interleaved_medians(candidates, repeats=20, warmup=2):
    """Median wall time of each callable, measured round-robin.

    Args:
        candidates: dict name -> zero-argument callable.
        repeats: timed rounds; each round calls every candidate once.
        warmup: untimed rounds first (tracing, caches).

    Returns:
        dict name -> median seconds per call.
    """
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1. Received: repeats={repeats}")
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    times = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}
