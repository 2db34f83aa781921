"""Interleaved timing: run candidates in turn so machine noise hits them alike."""

import time

import numpy as np


def interleaved_times(candidates, repeats=20, warmup=2):
    """Every timed call of each callable, measured round-robin.

    Args:
        candidates: dict name -> zero-argument callable.
        repeats: timed rounds; each round calls every candidate once.
        warmup: untimed rounds first (tracing, caches).

    Returns:
        dict name -> `{"wall": [...], "cpu": [...]}`: per round, the wall seconds
        and this process's CPU seconds (all its threads) of the call. On a machine
        shared with other work, CPU seconds move less with the others' load.
    """
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1. Received: repeats={repeats}")
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    times = {name: {"wall": [], "cpu": []} for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[name]["cpu"].append(time.process_time() - cpu)
            times[name]["wall"].append(time.perf_counter() - wall)
    return times


def spread(values):
    """`{"min", "median", "max"}` of a list of numbers (how stable the rounds were)."""
    return {"min": float(np.min(values)), "median": float(np.median(values)),
            "max": float(np.max(values))}


def interleaved_medians(candidates, repeats=20, warmup=2):
    """Median wall time of each callable, measured round-robin (see `interleaved_times`).

    Returns:
        dict name -> median seconds per call.
    """
    times = interleaved_times(candidates, repeats, warmup)
    return {name: spread(t["wall"])["median"] for name, t in times.items()}
