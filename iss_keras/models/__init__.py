"""Model builders of the paper's experiments, kept out of the library's core.

* `lstm_lm`: the Zaremba et al. word-level LSTM language model (ptb/);
* `rhn`: Recurrent Highway Networks, `RHNCell` and its language model (rhns/);
* `bidaf`: BiDAF for SQuAD, its attention layers declaring how they meet hidden units (bidaf/).

Each takes one `sparsity=` object (see `iss_keras.sparsity`).
"""
