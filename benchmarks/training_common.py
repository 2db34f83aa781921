"""What the training benchmarks share: their language model's command-line shape and the timed
rounds (one place for both)."""

import argparse
import time

import numpy as np


def parser(description, out, chunk_batches, repeats):
    """An argparse parser with the LM shape, the timing rounds, --quick and --out."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--vocab_size", type=int, default=10000)
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch_size", type=int, default=20)
    p.add_argument("--chunk_batches", type=int, default=chunk_batches,
                   help="batches per timed chunk")
    p.add_argument("--repeats", type=int, default=repeats, help="timed rounds (medians)")
    p.add_argument("--quick", action="store_true", help="tiny model, 2 rounds: a smoke test")
    p.add_argument("--out", default=out)
    return p


def parse(p, argv=None, quick_chunk_batches=3):
    args = p.parse_args(argv)
    if args.quick:
        args.vocab_size, args.hidden, args.chunk_batches, args.repeats = (300, 16,
                                                                          quick_chunk_batches, 2)
    return args


def median_seconds(candidates, repeats):
    """name -> median seconds of `fn()` over `repeats` rounds, the candidates taking turns
    in each round (so a slow phase of a shared machine hits all of them), after one warm-up
    call each (tracing and first-call costs)."""
    times = {name: [] for name in candidates}
    for fn in candidates.values():
        fn()
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}
