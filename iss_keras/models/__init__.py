"""Model builders of the paper's experiments, kept out of the library's core.

* `lstm_lm`: the Zaremba et al. word-level LSTM language model (ptb/);
* `rhn`: Recurrent Highway Networks, `RHNCell` and its language model (rhns/);
* `bidaf`: BiDAF for SQuAD (bidaf/); its layers, which declare how they meet hidden units, in
  `bidaf_layers`.

Each takes one `sparsity=` object (see `iss_keras.sparsity`).
"""
