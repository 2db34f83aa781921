"""Training cost of ISS: tokens/s of the same LSTM LM with and without it, interleaved.

Candidates, trained in turn on equal chunks of batches in one process:
  * plain: the LM with SGD and global-norm clipping;
  * iss_penalty: + ISSRegularizer on every LSTM and ZeroOut (|w| < 1e-4 -> 0)
    after every step, both inside the compiled train step;
  * iss_full: + ComponentEnforcer (whole-component zeroing and freezing after
    every step, an eager callback), i.e. what ptb/train.py runs;
  * torch_reference: a plain PyTorch nn.LSTM trainer of the same shape, when
    torch is importable (the reference users would otherwise pick).

Reports median tokens/s and step-time ratios against plain (goal for ISS:
at most 1.03). Token ids are random: speed does not depend on the text.

    python benchmarks/train_overhead.py            # 2x200, vocab 10k, 20 steps, batch 20
    python benchmarks/train_overhead.py --quick    # smoke test
"""

import json
import os
import platform
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import iss_keras  # noqa: E402
import training_common  # noqa: E402  (beside this script)
from iss_keras.files import write_text  # noqa: E402
from iss_keras.models.lstm_lm import lstm_language_model  # noqa: E402
from iss_keras.sparsity import ISS, Sparsity, WeightZeroing  # noqa: E402
from iss_keras.tasks.language_model import stream_batches  # noqa: E402
from iss_keras.timing import interleaved_medians  # noqa: E402


def parse_args(argv=None):
    p = training_common.parser(__doc__.split("\n")[0], "runs/benchmarks/train_overhead.json",
                                chunk_batches=40, repeats=7)
    p.add_argument("--no_torch", action="store_true")
    return training_common.parse(p, argv)


def keras_candidate(args, iss, enforce, x, y):
    t = args.steps
    model = lstm_language_model(args.vocab_size, [args.hidden] * 2, batch_size=args.batch_size,
                                steps=t, stateful=True, seed=0,
                                sparsity=Sparsity([ISS(0.00245 / t), WeightZeroing(1e-4)])
                                if iss else None)
    groups = iss_keras.couple(model)
    model.compile(keras.optimizers.SGD(1.0 * t, global_clipnorm=5.0 / t),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callbacks = [iss_keras.ComponentEnforcer(groups, threshold=1e-4)] if enforce else []

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


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, args.vocab_size, args.chunk_batches * args.batch_size * args.steps + 1)
    x, y = stream_batches(ids, args.batch_size, args.steps)
    candidates = {"plain": keras_candidate(args, False, False, x, y),
                  "iss_penalty": keras_candidate(args, True, False, x, y),
                  "iss_full": keras_candidate(args, True, True, x, y)}
    torch_note = "not importable"
    if not args.no_torch:
        try:
            candidates["torch_reference"] = torch_candidate(args, x, y)
            torch_note = "measured"
        except ImportError:
            pass
    tokens = x.size
    medians = interleaved_medians(candidates, args.repeats, warmup=1)
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "backend": keras.backend.backend(), "keras": keras.__version__},
        "shape": {"vocab_size": args.vocab_size, "hidden": [args.hidden] * 2, "steps": args.steps,
                  "batch_size": args.batch_size, "tokens_per_chunk": int(tokens)},
        "repeats": args.repeats, "torch": torch_note,
        "tokens_per_second": {n: tokens / m for n, m in medians.items()},
        "step_time_ratio_vs_plain": {n: m / medians["plain"] for n, m in medians.items()},
    }
    print(f"{'candidate':<18}{'tokens/s':>12}{'step time vs plain':>22}")
    for name in candidates:
        print(f"{name:<18}{result['tokens_per_second'][name]:>12,.0f}"
              f"{result['step_time_ratio_vs_plain'][name]:>21.3f}x")
    if torch_note != "measured":
        print("torch_reference: torch is not importable here; install torch to compare.")
    write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
