"""Data sets, read from local copies (a loader takes a path; only `download_*` uses the network).

* `ptb`: Penn Treebank word level (Mikolov's simple-examples).
"""

from iss_keras.datasets.ptb import (PTB_FILES, PTB_URL, download_ptb, lm_windows, load_ptb,
                                    ptb_vocabulary)

__all__ = ["PTB_FILES", "PTB_URL", "download_ptb", "lm_windows", "load_ptb", "ptb_vocabulary"]
