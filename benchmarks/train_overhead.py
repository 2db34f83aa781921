"""Training cost of ISS: tokens/s of the same LSTM LM with and without it, interleaved.

Candidates, trained in turn on equal chunks of batches in one process:
  * plain: the LM with SGD and global-norm clipping;
  * iss_penalty: + ISSRegularizer on every LSTM and ZeroOut (|w| < 1e-4 -> 0)
    after every step, both inside the compiled train step;
  * iss_full: + ComponentEnforcer (whole-component zeroing and freezing after
    every step), i.e. what ptb/train.py runs: on TensorFlow inside the compiled
    step (its default, in_step="auto"), under JAX from the callback after it;
  * iss_full_after_step (TensorFlow only): the same with in_step=False, the
    callback after each step, as before the enforcer moved into the step;
  * torch_reference: a plain PyTorch nn.LSTM trainer of the same shape, when
    torch is importable (the reference users would otherwise pick).

Reports median tokens/s and step-time ratios against plain (goal for ISS:
at most 1.03), and how stable the rounds were: min/median/max tokens/s of each
candidate, and min/median/max over rounds of each round's time against plain's
in the same round, in wall seconds and in this process's CPU seconds (which
move less when other work shares the machine; its load averages before and
after are recorded). Token ids are random: speed does not depend on the text.

    python benchmarks/train_overhead.py            # 2x200, vocab 10k, 20 steps, batch 20
    python benchmarks/train_overhead.py --quick    # smoke test
    python benchmarks/train_overhead.py --xla      # TensorFlow: every step compiled with XLA
"""

import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import iss_keras  # noqa: E402
import training_common  # noqa: E402  (beside this script)
from machine_state import cpu_busy  # noqa: E402  (beside this script)
from iss_keras.files import write_text  # noqa: E402
from iss_keras.provenance import provenance  # noqa: E402
from iss_keras.models.lstm_lm import lstm_language_model  # noqa: E402
from iss_keras.sparsity import ISS, Sparsity, WeightZeroing  # noqa: E402
from iss_keras.tasks.language_model import stream_batches  # noqa: E402
from iss_keras.timing import interleaved_times, spread  # noqa: E402
from iss_keras.training import TrainConfig  # noqa: E402


def parse_args(argv=None):
    p = training_common.parser(__doc__.split("\n")[0], "runs/benchmarks/train_overhead.json",
                                chunk_batches=40, repeats=7)
    p.add_argument("--no_torch", action="store_true")
    p.add_argument("--xla", action="store_true",
                   help="compile every Keras candidate's step with XLA (jit_compile=True; "
                   "Keras leaves XLA off on a CPU-only TensorFlow machine, the trainers' --xla)")
    return training_common.parse(p, argv)


def keras_candidate(args, iss, enforce, x, y, in_step="auto"):
    t = args.steps
    model = lstm_language_model(args.vocab_size, [args.hidden] * 2, batch_size=args.batch_size,
                                steps=t, stateful=True, seed=0,
                                sparsity=Sparsity([ISS(0.00245 / t), WeightZeroing(1e-4)])
                                if iss else None)
    groups = iss_keras.couple(model)
    model.compile(keras.optimizers.SGD(1.0 * t, global_clipnorm=5.0 / t),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=TrainConfig(xla=args.xla).jit_compile())
    callbacks = ([iss_keras.ComponentEnforcer(groups, threshold=1e-4, in_step=in_step)]
                 if enforce else [])

    def run():
        model.fit(x, y, batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0,
                  callbacks=callbacks)
    return run


def torch_candidate(args, x, y):
    import torch

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(args.vocab_size, args.hidden)
            self.lstm = torch.nn.LSTM(args.hidden, args.hidden, num_layers=2, batch_first=True)
            self.softmax = torch.nn.Linear(args.hidden, args.vocab_size)

        def forward(self, tokens, state):
            out, state = self.lstm(self.embedding(tokens), state)
            return self.softmax(out), state

    model = LM()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    loss_fn = torch.nn.CrossEntropyLoss()
    xs = torch.from_numpy(x.astype(np.int64)).view(-1, args.batch_size, args.steps)
    ys = torch.from_numpy(y.astype(np.int64)).view(-1, args.batch_size, args.steps)

    def run():
        state = None
        for xb, yb in zip(xs, ys):
            optimizer.zero_grad()
            logits, state = model(xb, state)
            state = tuple(s.detach() for s in state)  # truncated BPTT, state carried
            loss = loss_fn(logits.reshape(-1, args.vocab_size), yb.reshape(-1)) * args.steps
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
    return run


def round_ratios(times, clock):
    """name -> min/median/max over rounds of (its time / plain's time in the same round)."""
    plain = np.asarray(times["plain"][clock])
    return {name: spread(np.asarray(t[clock]) / plain) for name, t in times.items()}


def main(argv=None):
    args = parse_args(argv)
    busy_before = cpu_busy()
    load_before = os.getloadavg()
    rng = np.random.default_rng(0)
    ids = rng.integers(0, args.vocab_size, args.chunk_batches * args.batch_size * args.steps + 1)
    x, y = stream_batches(ids, args.batch_size, args.steps)
    candidates = {"plain": keras_candidate(args, False, False, x, y),
                  "iss_penalty": keras_candidate(args, True, False, x, y),
                  "iss_full": keras_candidate(args, True, True, x, y)}
    if keras.backend.backend() == "tensorflow":
        candidates["iss_full_after_step"] = keras_candidate(args, True, True, x, y, in_step=False)
    torch_note = "not importable"
    if not args.no_torch:
        try:
            candidates["torch_reference"] = torch_candidate(args, x, y)
            torch_note = "measured"
        except ImportError:
            pass
    tokens = x.size
    times = interleaved_times(candidates, args.repeats, warmup=1)
    medians = {name: spread(t["wall"])["median"] for name, t in times.items()}
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "backend": keras.backend.backend(), "keras": keras.__version__,
                    "xla": (keras.backend.backend() == "jax"
                            or TrainConfig(xla=args.xla).jit_compile() is True),
                    "load_average_before": list(load_before),
                    "cpu_busy_before": busy_before,
                    "load_average_after": list(os.getloadavg())},
        "date_utc": time.strftime("%Y-%m-%d", time.gmtime()),
        "run": provenance(),
        "shape": {"vocab_size": args.vocab_size, "hidden": [args.hidden] * 2, "steps": args.steps,
                  "batch_size": args.batch_size, "tokens_per_chunk": int(tokens)},
        "repeats": args.repeats, "torch": torch_note,
        "tokens_per_second": {n: tokens / m for n, m in medians.items()},
        "step_time_ratio_vs_plain": {n: m / medians["plain"] for n, m in medians.items()},
        # How stable the rounds were (tokens/s: min is the slowest round).
        "tokens_per_second_rounds": {n: {k: tokens / s for k, s in
                                         zip(("max", "median", "min"),
                                             spread(t["wall"]).values())}
                                     for n, t in times.items()},
        "round_ratio_vs_plain": {"wall": round_ratios(times, "wall"),
                                 "cpu": round_ratios(times, "cpu")},
    }
    print(f"{'candidate':<18}{'tokens/s min / median / max':>30}{'vs plain (median)':>19}"
          f"{'per-round ratio min / median / max, wall':>44}{'cpu':>22}")
    for name in candidates:
        r = result["tokens_per_second_rounds"][name]
        w, c = (result["round_ratio_vs_plain"][k][name] for k in ("wall", "cpu"))
        print(f"{name:<18}{r['min']:>12,.0f} / {r['median']:>6,.0f} / {r['max']:>6,.0f}"
              f"{result['step_time_ratio_vs_plain'][name]:>18.3f}x"
              f"{w['min']:>27.3f} / {w['median']:.3f} / {w['max']:.3f}"
              f"{c['min']:>10.3f} / {c['median']:.3f} / {c['max']:.3f}")
    print(f"load average (1, 5, 15 min) before: {load_before}, after: {os.getloadavg()}")
    if torch_note != "measured":
        print("torch_reference: torch is not importable here; install torch to compare.")
    write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
