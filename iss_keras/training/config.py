"""The task-neutral training options: optimizer, schedule, clipping, epochs, what is tested.

Units. The originals' losses are sums (a language model sums the
cross-entropy over the unrolled steps and averages over the batch); Keras
averages. A task states the ratio as its `loss_scale` (the language model:
`steps`). The options here and the sparsity methods' strengths are in the
original's units, and are converted in one place each: `keras_learning_rate`
and `keras_clipnorm` below, and `iss_keras.sparsity.from_options`.
With plain SGD, learning rate `lr * scale`, clip norm `clip / scale` and
strengths `lambda / scale` on the mean loss give the original's updates
exactly; Adam is invariant to the loss scale, so its learning rate is not
rescaled.
"""

import dataclasses

import keras

from iss_keras.options import (check_at_least, check_choices, check_fraction,
                               check_positive, option)
from iss_keras.training.freeze import FREEZE_MODES, frozen_optimizer_class

SCHEDULES = ("zaremba", "step", "constant")
TEST_CHECKPOINTS = ("last", "best_valid")
OPTIMIZERS = ("sgd", "adam")


@dataclasses.dataclass
class TrainConfig:
    """How to train, whatever the task (defaults: Zaremba et al.'s small config)."""

    epochs: int = option(13, "Total epochs (the original's max_max_epoch).")
    optimizer: str = option("sgd", "sgd: plain SGD, as both originals; adam.", choices=OPTIMIZERS)
    learning_rate: float = option(1.0, "Initial learning rate (original's units; with SGD it is "
                                  "multiplied by the task's loss scale, e.g. the unrolled steps).")
    lr_schedule: str = option("zaremba", "zaremba: decay every epoch after --max_epoch; step: "
                              "decay every --lr_step_epochs (the ISS sparselarge schedule); "
                              "constant.", choices=SCHEDULES)
    lr_decay: float = option(0.5, "Learning-rate decay factor.")
    max_epoch: int = option(4, "Epochs at the initial learning rate (zaremba schedule).")
    lr_step_epochs: int = option(0, "Epochs per decay step (step schedule; 0: epochs // 3).")
    max_grad_norm: float = option(5.0, "Global gradient-norm clip (original's units; divided by "
                                  "the task's loss scale). 0: no clipping.")
    ema: float = option(0.0, "Exponential moving average of the weights, e.g. 0.999 (the BiDAF "
                        "original): every epoch is validated, checkpointed and tested with the "
                        "averages; weights that are exactly zero stay zero in them. 0: off.")
    ema_validation: bool = option(True, "With --ema: validate every epoch with the moving "
                                  "averages. Off: with the raw weights, as the BiDAF original "
                                  "(its evaluation reads the trained variables, main.py:202-212; "
                                  "the averages are loaded only to test or fine-tune, load_ema, "
                                  "graph_handler.py:41-45); checkpoints and the test hold the "
                                  "averages either way.", ours=True)
    freeze_mode: str = option(
        "", "element: weights with |w| < 1e-4 get no update (their gradient is zeroed after "
        "clipping), so zeros stay zero; the ISS original's --freeze_mode for fine-tuning a "
        "sparse model (ptb_word_lm.py:221-247). Empty: off.", choices=FREEZE_MODES)
    xla: bool = option(False, "On TensorFlow, compile the training step with XLA "
                       "(jit_compile=True), which Keras leaves off on a machine without an "
                       "accelerator; JAX always compiles with XLA, torch is not affected. The "
                       "penalty, ZeroOut and optimizer update then run fused with the step: ISS's "
                       "training overhead and the step's own time both drop "
                       "(docs/deploy.md, 'Training overhead of ISS').", ours=True)
    seed: int = option(0, "Random seed (initializers, dropout).")
    test_checkpoint: str = option(
        "last", "Weights tested, rebuilt and exported: the last epoch's (the ptb original) or "
        "the best validation epoch's (the rhns original), kept in best.npz.",
        choices=TEST_CHECKPOINTS)

    def __post_init__(self):
        check_at_least(self, 1, "epochs")
        check_positive(self, "learning_rate")
        check_at_least(self, 0, "max_epoch", "lr_step_epochs", "max_grad_norm")
        check_positive(self, "lr_decay")
        check_fraction(self, "ema")
        check_choices(self, "optimizer", "lr_schedule", "test_checkpoint", "freeze_mode")

    def learning_rate_at(self, epoch):
        """Learning rate of 0-based `epoch` in the original's units, as the original computes it."""
        if self.lr_schedule == "zaremba":
            return self.learning_rate * self.lr_decay ** max(epoch + 1 - self.max_epoch, 0)
        if self.lr_schedule == "step":
            every = self.lr_step_epochs or max(1, self.epochs // 3)
            return self.learning_rate * self.lr_decay ** (epoch // every)
        return self.learning_rate

    def keras_learning_rate(self, epoch, loss_scale):
        """The learning rate for Keras's mean loss (SGD: times the loss scale)."""
        return self.learning_rate_at(epoch) * (loss_scale if self.optimizer == "sgd" else 1.0)

    def keras_clipnorm(self, loss_scale):
        """The global clip norm for Keras's mean loss (None: no clipping)."""
        return self.max_grad_norm / loss_scale if self.max_grad_norm else None

    def jit_compile(self):
        """`Model.compile`'s `jit_compile`: True with `xla` under TensorFlow, else Keras's
        own choice ("auto")."""
        return True if self.xla and keras.backend.backend() == "tensorflow" else "auto"

    def make_optimizer(self, loss_scale):
        cls = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}[self.optimizer]
        if self.freeze_mode == "element":
            cls = frozen_optimizer_class(cls)
        ema = {"use_ema": True, "ema_momentum": self.ema} if self.ema else {}
        return cls(self.keras_learning_rate(0, loss_scale),
                   global_clipnorm=self.keras_clipnorm(loss_scale), **ema)


QUANTIZE_CHOICES = ("int8", "int8_full", "float16")


@dataclasses.dataclass
class RunOptions:
    """Where a run writes, what it starts from, and what it does at the end."""

    workdir: str = option(None, "Checkpoints, logs, exports and results.json go here; "
                          "re-running the same command resumes from its checkpoint.")
    restore_from: str = option(None, "Workdir or checkpoint to start from (fine-tuning).")
    export: bool = option(True, "Export the rebuilt model at the end (SavedModel, TFLite).")
    quantize: tuple = option((), "Extra TFLite exports: int8 (dynamic-range), int8_full "
                             "(full-integer, calibrated on the task's representative inputs, "
                             "e.g. 200 training tokens), float16. With any of them every "
                             "TFLite export is also tested where the task can (LM: perplexity "
                             "over every test token, streamed) and timed at batch 1.",
                             choices=QUANTIZE_CHOICES, element=str)
    verbose: int = option(1, "1: Keras progress bar, 2: one line per epoch, 0: quiet.")

    def __post_init__(self):
        self.quantize = tuple(self.quantize)
        check_choices(self, "quantize")
