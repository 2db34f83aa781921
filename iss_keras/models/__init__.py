"""Model builders of the paper's experiments, kept out of the library's core.

* `lstm_lm`: the Zaremba et al. word-level LSTM language model (ptb/);
* `rhn`: Recurrent Highway Networks, `RHNCell` and its language model (rhns/);
* `bidaf`: BiDAF for SQuAD (bidaf/); its layers, which declare how they meet hidden units, in
  `bidaf_layers`.

Each takes one `sparsity=` object (see `iss_keras.sparsity`). The builders are
re-exported here: `iss_keras.models.lstm_language_model`, `rhn_language_model`
(with `RHNCell`), `lstm_classifier` (sentiment/); BiDAF's is `iss_keras.models.bidaf.bidaf`.
"""

from iss_keras.models import bidaf, lstm_lm, rhn, text_classifier  # noqa: F401  (the modules)
from iss_keras.models.lstm_lm import lstm_language_model
from iss_keras.models.rhn import RHNCell, rhn_language_model
from iss_keras.models.text_classifier import lstm_classifier

__all__ = ["RHNCell", "lstm_classifier", "lstm_language_model", "rhn_language_model"]
