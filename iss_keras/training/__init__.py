"""Task-neutral training: `train_and_evaluate(task, sparsity, config, workdir)`.

* `config`: `TrainConfig` (optimizer, schedule, clipping, epochs) and
  `RunOptions` (workdir, fine-tuning start, export), in the original's units;
* `loop`: `Run` (one `fit` with Keras's and the package's callbacks,
  checkpoint/resume) and `train_and_evaluate`;
* `checkpoints`, `callbacks`: what the loop writes after every epoch;
* `finish`: test, rebuild (verified), export, time, plot, results.json;
* `trainer`: the absl `main` of the trainer scripts, its flags generated from
  the option dataclasses.

Tasks (what is trained on what data) are in `iss_keras.tasks`, methods (how
the network is made sparse) in `iss_keras.sparsity`.
"""

from iss_keras.training.checkpoints import (CorruptCheckpointError, load_checkpoint,
                                            save_checkpoint)
from iss_keras.training.config import RunOptions, TrainConfig
from iss_keras.training.finish import finish, results_table
from iss_keras.training.loop import Run, RunInfo, TrainingDivergedError, train_and_evaluate

__all__ = ["CorruptCheckpointError", "Run", "RunInfo", "RunOptions", "TrainConfig",
           "TrainingDivergedError", "finish", "load_checkpoint", "results_table",
           "save_checkpoint", "train_and_evaluate"]
