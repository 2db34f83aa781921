"""ISS in a few minutes on real PTB text: train, report, shrink, verify.

A small two-layer LSTM language model is trained with `ISSRegularizer` on both
layers and whole-component zeroing after each step; the sparse model is then
shrunk to a smaller dense model and both are evaluated on the validation text.

    python examples/ptb_quickstart.py --data_dir=../shared/data/ptb
"""

import argparse
import json
import os
import time

import keras
import numpy as np

import iss_keras
from iss_keras.datasets import lm_windows, load_ptb
from iss_keras.files import write_text


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", required=True, help="directory with ptb.{train,valid,test}.txt")
    p.add_argument("--vocab_size", type=int, default=2000, help="most frequent words kept")
    p.add_argument("--train_tokens", type=int, default=200_000, help="training tokens used")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="unrolled time steps")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--learning_rate", type=float, default=1.0,
                   help="SGD learning rate in the original's units (loss summed over unrolled steps)")
    p.add_argument("--max_grad_norm", type=float, default=5.0, help="global-norm clip, original's units")
    p.add_argument("--strength", type=float, default=0.01, help="ISS lambda, original's units")
    p.add_argument("--mode", choices=["threshold", "proximal"], default="threshold",
                   help="subgradient + zeroing of components below --threshold, or proximal steps")
    p.add_argument("--threshold", type=float, default=1e-2, help="component norm zeroed after each step")
    p.add_argument("--out", default="runs/quickstart", help="where results.json and the models go")
    return p.parse_args()


def build(args):
    zero = iss_keras.ZeroOut(1e-4)

    def lstm():
        return keras.layers.LSTM(args.hidden, return_sequences=True,
                                 recurrent_regularizer=iss_keras.ISSRegularizer(
                                     args.strength / args.steps, proximal=args.mode == "proximal"),
                                 kernel_constraint=zero, recurrent_constraint=zero)

    return keras.Sequential([keras.Input((args.steps,), dtype="int32"),
                             keras.layers.Embedding(args.vocab_size, args.hidden),
                             lstm(), keras.layers.Dropout(0.1), lstm(), keras.layers.Dropout(0.1),
                             keras.layers.Dense(args.vocab_size)])


def perplexity(model, x, y, batch_size):
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    logits = model.predict(x, batch_size=batch_size, verbose=0)
    return float(np.exp(keras.ops.convert_to_numpy(loss(y, logits))))


def main():
    args = parse_args()
    keras.utils.set_random_seed(0)
    splits, _ = load_ptb(args.data_dir, args.vocab_size)
    x, y = lm_windows(splits["train"][:args.train_tokens], args.steps)
    vx, vy = lm_windows(splits["valid"], args.steps)

    model = build(args)
    groups = iss_keras.couple(model)
    # The original sums the loss over the unrolled steps; Keras averages it. Scaling
    # the learning rate up and lambda and the clip norm down by `steps` gives the
    # same updates, so flags keep the original's meaning.
    model.compile(keras.optimizers.SGD(args.learning_rate * args.steps,
                                       global_clipnorm=args.max_grad_norm / args.steps),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callbacks = [iss_keras.ComponentEnforcer(groups, mode=args.mode, threshold=args.threshold),
                 iss_keras.SparsityReportCallback(groups),  # puts iss/... into the epoch logs
                 keras.callbacks.TensorBoard(os.path.join(args.out, "tb"), write_graph=False)]
    start = time.time()
    history = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, callbacks=callbacks, verbose=2)
    train_s = time.time() - start
    active = {k: v for k, v in history.history.items() if k.endswith("active_units")}
    print("active units per epoch:", json.dumps(active))

    report = iss_keras.sparsity_report(model, groups)
    print("\n" + report.to_text().split("\n\nvariable")[0])
    small, plan = iss_keras.shrink(model, groups)  # raises if outputs differ
    sparse_ppl = perplexity(model, vx, vy, args.batch_size)
    small_ppl = perplexity(small, vx, vy, args.batch_size)
    os.makedirs(args.out, exist_ok=True)
    small.save(os.path.join(args.out, "shrunk.keras"))
    plan.save(os.path.join(args.out, "plan.json"))
    results = {"hidden_before": [a for a, _ in plan.summary().values()],
               "hidden_after": [b for _, b in plan.summary().values()],
               "valid_perplexity_sparse": sparse_ppl, "valid_perplexity_shrunk": small_ppl,
               "weights": report.totals["weights"], "weights_after": report.totals["weights_after"],
               "macs_per_token": report.totals["macs_per_token"],
               "macs_per_token_after": report.totals["macs_per_token_after"],
               "train_seconds": round(train_s, 1), "args": vars(args)}
    write_text(os.path.join(args.out, "results.json"), json.dumps(results, indent=1))
    print(f"\n{'':<26}{'sparse':>12}{'shrunk':>12}")
    print(f"{'hidden units':<26}{str(results['hidden_before']):>12}{str(results['hidden_after']):>12}")
    print(f"{'weights':<26}{results['weights']:>12,}{results['weights_after']:>12,}")
    print(f"{'multiply-adds per token':<26}{results['macs_per_token']:>12,}{results['macs_per_token_after']:>12,}")
    print(f"{'valid perplexity':<26}{sparse_ppl:>12.2f}{small_ppl:>12.2f}")
    print(f"\nshrunk model verified equal; saved to {args.out}/ (train {train_s:.0f} s)")


if __name__ == "__main__":
    main()
