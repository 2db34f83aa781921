"""BiDAF training and evaluation questions per second: the previous step against the fast one.

`bidaf/train.py`'s model on the dev-article split's real batches, at d = 32 (the quick
config) and d = 100 (the original's), batch 60, in one process:

  * **previous**: Keras's two LSTM loops per bidirectional layer (`fused=False`), contexts
    padded to the `--context_buckets` length (96/160/256/400), questions to 30 tokens;
  * **fast**: both directions in one loop with the input projections before it, no mask in
    the loop and the gradient written out for right-padded batches
    (`iss_keras.lstm_step.fused_bidirectional_lstm`), batches of similar context length
    padded to their own longest context and question (the original's `--cluster` and
    `--len_opt`).

Both train on the same questions: a seeded sample of `--batches` x 60 training questions,
batched each way (so each variant's padding is its own, the work is the same). Training
rounds are interleaved (previous batch k, fast batch k, ...), after untimed batches of every
shape the timed ones use (so no trace is timed); questions/s is questions over total
seconds. Evaluation: the first `--eval_questions` questions through the probabilities model,
batched each way, whole passes interleaved. The models compute the same function (tests:
`test_the_fused_bilstm_step_equals_the_stock_layers_in_outputs_and_gradients`).

    python benchmarks/bidaf_step.py --out=benchmarks/results/bidaf_step.json
    python benchmarks/bidaf_step.py --quick          # smoke test on the tests' tiny SQuAD
"""

import argparse
import dataclasses
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from iss_keras.startup import start_backend_quietly  # noqa: E402

start_backend_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from machine_state import load_average, machine_before, was_shared  # noqa: E402
from iss_keras.datasets import squad  # noqa: E402
from iss_keras.files import write_text  # noqa: E402
from iss_keras.models.bidaf import bidaf  # noqa: E402
from iss_keras.models.bidaf_layers import DropoutBidirectional  # noqa: E402
from iss_keras.provenance import provenance  # noqa: E402
from iss_keras.tasks import question_answering as qa  # noqa: E402
from iss_keras.timing import interleaved_times  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--squad_dev", default=os.path.join(DATA, "squad", "dev-v1.1.json"))
    p.add_argument("--glove", default=os.path.join(DATA, "glove",
                                                   "glove.6B.50d.top50000.txt.gz"))
    p.add_argument("--glove_dim", type=int, default=50)
    p.add_argument("--hidden_sizes", default="32,100", help="d of each measured model")
    p.add_argument("--char_out_size", type=int, default=100)
    p.add_argument("--batch_size", type=int, default=60)
    p.add_argument("--batches", type=int, default=16, help="timed training batches per variant")
    p.add_argument("--eval_questions", type=int, default=480)
    p.add_argument("--eval_rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="tiny sizes, few batches: a smoke test")
    p.add_argument("--out", default="runs/benchmarks/bidaf_step.json")
    args = p.parse_args(argv)
    args.hidden_sizes = [int(d) for d in args.hidden_sizes.split(",")]
    if args.quick:
        args.hidden_sizes, args.char_out_size, args.batch_size = [4], 4, 4
        args.batches, args.eval_questions, args.eval_rounds = 2, 8, 1
    for name in ("batches", "eval_questions", "eval_rounds", "batch_size"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1. Received: {getattr(args, name)}")
    return args


def set_fused(model, fused):
    for layer in model._flatten_layers():
        if isinstance(layer, DropoutBidirectional):
            layer.fused = fused
    return model


class Variant:
    """One way of batching and stepping: its training model, batches and eval batches."""

    def __init__(self, name, fused, len_opt, build, task, sample, eval_encoded, batch_size):
        self.name, self.fused = name, fused
        config = task.config
        self.model = set_fused(build(training=True, probabilities=False), fused)
        self.model.compile(keras.optimizers.Adam(1e-3), task.loss())
        batches = qa.SquadTrainingBatches(
            sample, batch_size, config.context_buckets, config.sent_size_th,
            config.ques_size_th, config.word_size_th, seed=0, len_opt=len_opt, cluster=len_opt)
        self.train = [batches[k] for k in range(batches.batches_per_pass)]
        self.eval_model = set_fused(build(training=False, probabilities=True), fused)
        config = dataclasses.replace(config, len_opt=len_opt, eval_batch_size=batch_size)
        self.eval_batches = []
        for batch in qa.evaluation_batches(eval_encoded, config):
            qa.pad_rows(batch, batch_size)  # one batch size, as the task's predict
            self.eval_batches.append(qa.model_inputs(batch))
        self.next, self.questions = 0, 0

    def shapes(self, batches):
        return [tuple(b[0]["context_words"].shape[1:]) + tuple(b[0]["question_words"].shape[1:])
                for b in batches]

    def warm_up(self):
        """One untimed batch of every shape the timed ones have (traces, caches)."""
        seen = set()
        for (x, y, w), shape in zip(self.train, self.shapes(self.train)):
            if shape not in seen:
                seen.add(shape)
                self.model.train_on_batch(x, y, sample_weight=w)
        seen = set()
        for inputs in self.eval_batches:
            shape = (inputs["context_words"].shape, inputs["question_words"].shape)
            if shape not in seen:
                seen.add(shape)
                self.eval_model.predict_on_batch(inputs)

    def train_step(self):
        x, y, w = self.train[self.next % len(self.train)]
        self.next += 1
        self.model.train_on_batch(x, y, sample_weight=w)
        self.questions += int(np.sum(w))

    def eval_pass(self):
        for inputs in self.eval_batches:
            self.eval_model.predict_on_batch(inputs)


def measure(args, d, task, vocabulary, vectors):
    def build(*, training, probabilities):
        return bidaf(d, len(vocabulary["words"]), vocabulary["num_trainable_words"],
                     len(vocabulary["chars"]), word_dim=args.glove_dim,
                     char_filters=args.char_out_size, training=training,
                     probabilities=probabilities, zero_threshold=4e-4 if training else 0.0,
                     word_vectors=vectors if training else None, seed=0)

    rng = np.random.default_rng(0)
    count = min(len(task.train_encoded), args.batches * args.batch_size)
    sample = [task.train_encoded[k] for k in sorted(rng.choice(len(task.train_encoded), count,
                                                               replace=False))]
    eval_encoded = task.eval_encoded[:args.eval_questions]
    variants = [Variant("previous", False, False, build, task, sample, eval_encoded,
                        args.batch_size),
                Variant("fast", True, True, build, task, sample, eval_encoded, args.batch_size)]
    for v in variants:
        v.warm_up()
    rounds = max(len(v.train) for v in variants)
    train = interleaved_times({v.name: v.train_step for v in variants}, repeats=rounds,
                              warmup=0)
    evaluation = interleaved_times({v.name: v.eval_pass for v in variants},
                                   repeats=args.eval_rounds, warmup=0)
    out = {"hidden_size": d, "train_questions": count, "eval_questions": len(eval_encoded)}
    for v in variants:
        padded = sum(int(np.prod(x["context_words"].shape)) for x, _, _ in v.train)
        real = sum(int(np.count_nonzero(x["context_words"])) for x, _, _ in v.train)
        seconds = sum(train[v.name]["wall"][:len(v.train)])
        out[v.name] = {
            "train_batches": len(v.train),
            "train_questions_per_second": v.questions / seconds,
            "train_seconds_per_batch": [round(t, 4) for t in train[v.name]["wall"]],
            "context_padding": padded / real,
            "eval_questions_per_second": len(eval_encoded) / float(
                np.median(evaluation[v.name]["wall"])),
            "eval_pass_seconds": [round(t, 4) for t in evaluation[v.name]["wall"]]}
    for key in ("train_questions_per_second", "eval_questions_per_second"):
        out[f"{key}_speedup"] = out["fast"][key] / out["previous"][key]
    print(f"d = {d}: training {out['previous']['train_questions_per_second']:.1f} -> "
          f"{out['fast']['train_questions_per_second']:.1f} questions/s "
          f"({out['train_questions_per_second_speedup']:.2f}x); evaluation "
          f"{out['previous']['eval_questions_per_second']:.1f} -> "
          f"{out['fast']['eval_questions_per_second']:.1f} "
          f"({out['eval_questions_per_second_speedup']:.2f}x); context padding "
          f"{out['previous']['context_padding']:.2f} -> {out['fast']['context_padding']:.2f}")
    return out


def main(argv=None):
    args = parse_args(argv)
    before = machine_before()
    start = time.perf_counter()
    config = qa.QuestionAnsweringConfig(squad_dev=args.squad_dev, glove=args.glove,
                                        glove_dim=args.glove_dim, batch_size=args.batch_size)
    data, vocabulary, vectors = qa.read_question_answering(config)
    task = qa.QuestionAnsweringTask(lambda **kwargs: None, data, vocabulary, vectors, config)
    result = {"run": provenance(), "load_before": before, "batch_size": args.batch_size,
              "char_out_size": args.char_out_size, "models": []}
    for d in args.hidden_sizes:
        result["models"].append(measure(args, d, task, vocabulary, vectors))
    result["load_after"] = load_average()
    result["shared"] = was_shared(before)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["goals"] = {f"train_speedup_d{m['hidden_size']}": {
        "got": m["train_questions_per_second_speedup"], "goal": 1.5,
        "met": m["train_questions_per_second_speedup"] >= 1.5} for m in result["models"]}
    write_text(args.out, json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
