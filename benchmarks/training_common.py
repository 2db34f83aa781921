"""The command-line shape of the training benchmarks' language model (one place for both)."""

import argparse


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

